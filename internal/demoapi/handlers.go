package demoapi

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/portcullis/portcullis/internal/web"
	"github.com/portcullis/portcullis/jwtverify"
)

// noOrder is the resource the owner policy sees when the id names no order: evaluating the
// policy for a missing order too keeps "missing" and "someone else's" alike in their timing,
// not only in their response.
var noOrder = map[string]any{"id": "", "customer": "", "status": ""}

// listOrders: GET /api/orders.
func (a *API) listOrders(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims) {
	web.RequestInfo(r.Context()).Route = "orders.list"
	if !requireScope(w, r, c, ScopeOrdersRead) {
		return
	}
	customer, ok := customerOf(w, r, c)
	if !ok {
		return
	}
	req := jwtverify.RequestInputFrom(r)
	out := orderList{Orders: []orderView{}}
	for _, o := range a.store.listByCustomer(customer) {
		// The index already picked the caller's orders; the policy decides per object anyway,
		// so one rule says who sees an order, whichever route shows it.
		if a.mayRead(r, c, req, o.attributes()) {
			out.Orders = append(out.Orders, readView(&o))
		}
	}
	writeJSON(w, r, http.StatusOK, out)
}

// getOrder: GET /api/orders/{id}. Another customer's order is answered exactly like a missing
// one.
func (a *API) getOrder(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims) {
	info := web.RequestInfo(r.Context())
	info.Route = "orders.get"
	if !requireScope(w, r, c, ScopeOrdersRead) {
		return
	}
	if _, ok := customerOf(w, r, c); !ok {
		return
	}
	o, found := a.store.get(r.PathValue("id"))
	resource := noOrder
	if found {
		resource = o.attributes()
	}
	allowed := a.mayRead(r, c, jwtverify.RequestInputFrom(r), resource)
	switch {
	case !found:
		info.Reason = "no such order"
	case !allowed:
		// The access log tells the two apart; the caller cannot. No extra work on this path,
		// so its timing does not tell them apart either.
		info.Reason = "order of another customer"
	default:
		writeJSON(w, r, http.StatusOK, readView(&o))
		return
	}
	web.Error(w, r, http.StatusNotFound, "No such order.")
}

// mayRead evaluates the owner policy; an evaluation error denies.
func (a *API) mayRead(r *http.Request, c *jwtverify.Claims, req jwtverify.RequestInput, resource map[string]any) bool {
	ok, err := a.owner.Allow(r.Context(), jwtverify.PolicyInput{Claims: c, Request: req, Resource: resource})
	if err != nil {
		a.log.Debug("owner policy error", "request_id", web.RequestID(r.Context()), "err", err)
	}
	return ok
}

// createOrder: POST /api/orders.
func (a *API) createOrder(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims) {
	info := web.RequestInfo(r.Context())
	info.Route = "orders.create"
	if !requireScope(w, r, c, ScopeOrdersWrite) {
		return
	}
	customer, ok := customerOf(w, r, c)
	if !ok {
		return
	}
	if !checkContentType(r.Header.Get("Content-Type")) || len(r.Header.Values("Content-Type")) > 1 {
		info.Reason = "content type"
		web.Error(w, r, http.StatusUnsupportedMediaType, "Send the order as application/json.")
		return
	}
	if r.ContentLength > MaxBodyBytes {
		info.Reason = "body too large"
		web.Error(w, r, http.StatusRequestEntityTooLarge, "The body is larger than 16 KiB.")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			info.Reason = "body too large"
			web.Error(w, r, http.StatusRequestEntityTooLarge, "The body is larger than 16 KiB.")
			return
		}
		info.Reason = "reading body: " + err.Error()
		web.Error(w, r, http.StatusBadRequest, "The body could not be read.")
		return
	}
	req, err := decodeOrder(data)
	if err != nil {
		info.Reason = "invalid body"
		web.Error(w, r, http.StatusBadRequest, err.Error()) // a *bodyError: public by construction
		return
	}
	o, err := a.store.create(customer, req.Item, req.Quantity, a.now())
	if err != nil {
		info.Reason = err.Error()
		web.Error(w, r, http.StatusInsufficientStorage, "The order limit is reached.")
		return
	}
	w.Header().Set("Location", "/api/orders/"+url.PathEscape(o.ID))
	writeJSON(w, r, http.StatusCreated, viewFor(&o, c))
}

// credentialHeaders are never echoed by whoami.
var credentialHeaders = map[string]bool{"Authorization": true, "Proxy-Authorization": true, "Cookie": true}

// whoamiResponse is the body of GET /api/whoami.
type whoamiResponse struct {
	Claims  map[string]any      `json:"claims"`
	Headers map[string][]string `json:"headers"`
}

// whoami: GET /api/whoami. Any verified token; it shows what reached the API.
func (a *API) whoami(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims) {
	web.RequestInfo(r.Context()).Route = "whoami"
	headers := make(map[string][]string, len(r.Header)+1)
	for name, values := range r.Header {
		if credentialHeaders[http.CanonicalHeaderKey(name)] {
			continue
		}
		headers[name] = values
	}
	headers["Host"] = []string{r.Host}
	writeJSON(w, r, http.StatusOK, whoamiResponse{Claims: c.Raw, Headers: headers})
}

// report is the body of GET /internal/reports.
type report struct {
	GeneratedAt      string         `json:"generated_at"`
	Customers        []string       `json:"customers"`
	OrdersByCustomer map[string]int `json:"orders_by_customer"`
	OrdersTotal      int            `json:"orders_total"`
}

// reports: GET /internal/reports, for internal services with reports:read.
func (a *API) reports(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims) {
	web.RequestInfo(r.Context()).Route = "reports"
	if !requireScope(w, r, c, ScopeReportsRead) {
		return
	}
	counts := a.store.countByCustomer()
	total := 0
	for _, n := range counts {
		total += n
	}
	writeJSON(w, r, http.StatusOK, report{
		GeneratedAt:      a.now().UTC().Format(time.RFC3339),
		Customers:        customers(counts),
		OrdersByCustomer: counts,
		OrdersTotal:      total,
	})
}
