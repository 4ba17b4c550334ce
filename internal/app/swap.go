package app

import (
	"net/http"
	"sync/atomic"
)

// swapHandler serves through whichever handler was stored last. A reload swaps it in one
// atomic step: requests already running finish on the handler they started with.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func newSwapHandler(h http.Handler) *swapHandler {
	s := &swapHandler{}
	s.swap(h)
	return s
}

func (s *swapHandler) swap(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}
