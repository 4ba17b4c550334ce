package web

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem is an RFC 9457 problem detail. Title and Detail are public: they must never carry
// internals (file names, driver errors, token contents). The private cause goes to the log.
type Problem struct {
	Type      string `json:"type,omitempty"` // default about:blank
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// WriteProblem renders p as application/problem+json with the request id of r. The title
// defaults to the status text.
func WriteProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if r != nil {
		p.RequestID = RequestID(r.Context())
	}
	body, _ := json.Marshal(p) // a struct of strings and an int cannot fail
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// Error writes a problem with only a status and a public detail.
func Error(w http.ResponseWriter, r *http.Request, status int, detail string) {
	WriteProblem(w, r, Problem{Status: status, Detail: detail})
}
