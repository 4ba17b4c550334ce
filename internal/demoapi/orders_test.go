package demoapi

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/portcullis/portcullis/jwtverify"
)

// ids returns the order ids of a list response.
func ids(t *testing.T, r response) []string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	var l orderList
	jsonOf(t, r, &l)
	out := []string{}
	for _, o := range l.Orders {
		out = append(out, o.ID)
	}
	return out
}

func TestListOrdersShowsOnlyTheCallersOwn(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		token string
		path  string
		want  []string
	}{
		{"acme", f.acme(), "/api/orders", []string{"A-1001", "A-1002", "A-1003"}},
		{"globex", f.globex(), "/api/orders", []string{"G-2001", "G-2002"}},
		{"acme asks for globex in the query", f.acme(), "/api/orders?customer=globex&customer_id=globex", []string{"A-1001", "A-1002", "A-1003"}},
		{"a customer without orders", f.token(accessClaims("initech-app", "initech", "orders:read")), "/api/orders", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(http.MethodGet, tc.path, tc.token, nil, "X-Customer-Id", "globex")
			if diff := cmp.Diff(tc.want, ids(t, r)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetOrder(t *testing.T) {
	f := newFixture(t)
	r := f.do(http.MethodGet, "/api/orders/A-1002", f.acme(), nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	var got orderView
	jsonOf(t, r, &got)
	want := orderView{
		ID: "A-1002", Customer: "acme", Item: "rocket skates", Quantity: 2,
		Total: "259.00", Currency: "USD", Status: "shipped", CreatedAt: "2025-03-03T14:00:00Z",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"created_at", "currency", "customer", "id", "item", "quantity", "status", "total"}, keysOf(t, r.body)); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
}

// TestBOLA: a customer cannot read another customer's order, and cannot tell it exists: the
// answer is the one for an id that names no order, byte for byte but the request id.
func TestBOLA(t *testing.T) {
	f := newFixture(t)
	acme, globex := f.acme(), f.globex()
	// Rules out that the 404 below comes from a broken lookup: the owner reads it fine.
	if r := f.do(http.MethodGet, "/api/orders/G-2001", globex, nil); r.status != http.StatusOK {
		t.Fatalf("globex reading its own order: status %d", r.status)
	}
	missing := f.do(http.MethodGet, "/api/orders/A-9999", acme, nil)
	if missing.status != http.StatusNotFound {
		t.Fatalf("missing order: status %d", missing.status)
	}
	tests := []struct {
		name, token, id string
	}{
		{"acme reads globex's order", acme, "G-2001"},
		{"acme reads globex's other order", acme, "G-2002"},
		{"globex reads acme's order", globex, "A-1001"},
		{"lower-case id", acme, "g-2001"},
		{"encoded slash", acme, "G-2001%2F"},
		{"very long id", acme, strings.Repeat("G", 200)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(http.MethodGet, "/api/orders/"+tc.id, tc.token, nil)
			if r.status != missing.status {
				t.Fatalf("status %d, want %d like a missing order; body %s", r.status, missing.status, r.body)
			}
			p, want := problemOf(t, r), problemOf(t, missing)
			p.RequestID, want.RequestID = "", ""
			if diff := cmp.Diff(want, p); diff != "" {
				t.Errorf("differs from a missing order (-missing +this):\n%s", diff)
			}
			for _, h := range []string{"Content-Type", "Content-Length", "Cache-Control", "WWW-Authenticate", "Allow"} {
				if r.header.Get(h) != missing.header.Get(h) {
					t.Errorf("header %s = %q, a missing order has %q", h, r.header.Get(h), missing.header.Get(h))
				}
			}
			if strings.Contains(string(r.body), "globex") || strings.Contains(string(r.body), "acme") {
				t.Errorf("body names a customer: %s", r.body)
			}
		})
	}
}

func TestOrdersNeedScopeAndCustomer(t *testing.T) {
	f := newFixture(t)
	readOnly := f.globex()
	noRead := f.token(accessClaims("acme-app", "acme", "orders:write"))
	noScope := f.token(accessClaims("acme-app", "acme", ""))
	noCustomer := f.token(accessClaims("reports-svc", "", "orders:read orders:write reports:read"))
	numericCustomer := f.token(with(accessClaims("acme-app", "", "orders:read orders:write"), "customer_id", 42))
	emptyCustomer := f.token(with(accessClaims("acme-app", "", "orders:read orders:write"), "customer_id", ""))
	body := `{"item":"anvil","quantity":1}`
	tests := []struct {
		name         string
		method, path string
		token        string
		challenge    string // "" when the 403 is not about scopes
	}{
		{"list without orders:read", http.MethodGet, "/api/orders", noRead, `Bearer error="insufficient_scope", scope="orders:read"`},
		{"get without orders:read", http.MethodGet, "/api/orders/A-1001", noRead, `Bearer error="insufficient_scope", scope="orders:read"`},
		{"list without any scope", http.MethodGet, "/api/orders", noScope, `Bearer error="insufficient_scope", scope="orders:read"`},
		{"create without orders:write", http.MethodPost, "/api/orders", readOnly, `Bearer error="insufficient_scope", scope="orders:write"`},
		{"reports without reports:read", http.MethodGet, "/internal/reports", f.acme(), `Bearer error="insufficient_scope", scope="reports:read"`},
		{"list without customer_id", http.MethodGet, "/api/orders", noCustomer, ""},
		{"get without customer_id", http.MethodGet, "/api/orders/A-1001", noCustomer, ""},
		{"create without customer_id", http.MethodPost, "/api/orders", noCustomer, ""},
		{"numeric customer_id", http.MethodGet, "/api/orders", numericCustomer, ""},
		{"empty customer_id", http.MethodGet, "/api/orders/A-1001", emptyCustomer, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			if tc.method == http.MethodPost {
				b = []byte(body)
			}
			r := f.do(tc.method, tc.path, tc.token, b, "Content-Type", "application/json")
			if r.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403; body %s", r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			problemOf(t, r)
		})
	}
	if got := f.api.store.countByCustomer(); got["acme"] != 3 || got["globex"] != 2 || len(got) != 2 {
		t.Errorf("refused requests changed the store: %v", got)
	}
}

func TestCreateOrder(t *testing.T) {
	f := newFixture(t)
	acme := f.acme()
	r := f.postOrder(acme, `{"item":"Anvil","quantity":3}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	var created orderView
	jsonOf(t, r, &created)
	want := orderView{
		ID: "O-5001", Customer: "acme", Item: "Anvil", Quantity: 3,
		Total: "149.97", Currency: "USD", Status: "pending", CreatedAt: "2026-01-15T12:00:00Z",
	}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	loc := r.header.Get("Location")
	if loc != "/api/orders/O-5001" {
		t.Fatalf("Location %q", loc)
	}
	var read orderView
	jsonOf(t, f.do(http.MethodGet, loc, acme, nil), &read)
	if diff := cmp.Diff(created, read); diff != "" {
		t.Errorf("read back (-created +read):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"A-1001", "A-1002", "A-1003", "O-5001"}, ids(t, f.do(http.MethodGet, "/api/orders", acme, nil))); diff != "" {
		t.Errorf("acme's list (-want +got):\n%s", diff)
	}
	// The new order is acme's alone.
	if r := f.do(http.MethodGet, loc, f.globex(), nil); r.status != http.StatusNotFound {
		t.Errorf("globex reads acme's new order: status %d", r.status)
	}
	if diff := cmp.Diff([]string{"G-2001", "G-2002"}, ids(t, f.do(http.MethodGet, "/api/orders", f.globex(), nil))); diff != "" {
		t.Errorf("globex's list (-want +got):\n%s", diff)
	}
}

// TestFieldSharing: internal fields never leave the API, and a writer that may not read gets
// a receipt without prices.
func TestFieldSharing(t *testing.T) {
	f := newFixture(t)
	writeOnly := f.token(accessClaims("acme-app", "acme", "orders:write"))
	r := f.postOrder(writeOnly, `{"item":"giant magnet","quantity":2}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	if diff := cmp.Diff([]string{"id", "item", "quantity", "status"}, keysOf(t, r.body)); diff != "" {
		t.Errorf("write-only receipt fields (-want +got):\n%s", diff)
	}
	var receipt orderReceipt
	jsonOf(t, r, &receipt)
	if diff := cmp.Diff(orderReceipt{ID: "O-5001", Item: "giant magnet", Quantity: 2, Status: "pending"}, receipt); diff != "" {
		t.Errorf("receipt (-want +got):\n%s", diff)
	}

	reporter := f.token(accessClaims("reports-svc", "", "reports:read"))
	responses := []response{
		r,
		f.postOrder(f.acme(), `{"item":"anvil","quantity":1}`),
		f.do(http.MethodGet, "/api/orders", f.acme(), nil),
		f.do(http.MethodGet, "/api/orders/A-1001", f.acme(), nil),
		f.do(http.MethodGet, "/api/orders/G-2002", f.globex(), nil),
		f.do(http.MethodGet, "/internal/reports", reporter, nil),
	}
	for i, r := range responses {
		if r.status/100 != 2 {
			t.Fatalf("response %d: status %d; body %s", i, r.status, r.body)
		}
		body := strings.ToLower(string(r.body))
		for _, secret := range []string{"margin", "shipping", "address", "desert road", "volcano lair", "2100", "unit"} {
			if strings.Contains(body, secret) {
				t.Errorf("response %d contains %q: %s", i, secret, r.body)
			}
		}
	}
}

func TestWhoami(t *testing.T) {
	f := newFixture(t)
	tok := f.acme()
	r := f.do(http.MethodGet, "/api/whoami", tok, nil,
		"X-Forwarded-For", "203.0.113.7",
		"Cookie", "session=secret-cookie",
		"Proxy-Authorization", "Basic c2VjcmV0",
		"X-Portcullis-Client-Id", "spoofed")
	if r.status != http.StatusOK {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	var got whoamiResponse
	jsonOf(t, r, &got)
	for k, v := range map[string]string{"customer_id": "acme", "client_id": "acme-app", "scope": "orders:read orders:write", "iss": testIssuer, "aud": testAudience} {
		if got.Claims[k] != v {
			t.Errorf("claim %s = %v, want %q", k, got.Claims[k], v)
		}
	}
	if len(got.Claims) != 9 {
		t.Errorf("claims %v, want the token's 9", got.Claims)
	}
	// It shows headers as they arrived (the gateway is what rewrites them) …
	if diff := cmp.Diff([]string{"203.0.113.7"}, got.Headers["X-Forwarded-For"]); diff != "" {
		t.Errorf("X-Forwarded-For (-want +got):\n%s", diff)
	}
	if len(got.Headers["Host"]) != 1 || got.Headers["Host"][0] == "" {
		t.Errorf("Host %v", got.Headers["Host"])
	}
	// … but never a credential.
	for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
		if _, ok := got.Headers[h]; ok {
			t.Errorf("whoami echoes %s", h)
		}
	}
	for _, secret := range []string{tok, strings.Split(tok, ".")[2], "secret-cookie", "c2VjcmV0"} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("body contains a credential %q", secret[:8])
		}
	}
	// Any scope will do; none at all too.
	if r := f.do(http.MethodGet, "/api/whoami", f.token(accessClaims("x", "", "")), nil); r.status != http.StatusOK {
		t.Errorf("token without scopes: status %d", r.status)
	}
}

func TestReports(t *testing.T) {
	f := newFixture(t)
	if r := f.postOrder(f.acme(), `{"item":"anvil","quantity":1}`); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	r := f.do(http.MethodGet, "/internal/reports", f.token(accessClaims("reports-svc", "", "reports:read")), nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	var got report
	jsonOf(t, r, &got)
	want := report{
		GeneratedAt:      "2026-01-15T12:00:00Z",
		Customers:        []string{"acme", "globex"},
		OrdersByCustomer: map[string]int{"acme": 4, "globex": 2},
		OrdersTotal:      6,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestOrderLimits(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxOrders, o.MaxOrdersPerCustomer = 3, 2 })
	acme := f.acme()
	initech := f.token(accessClaims("initech-app", "initech", "orders:read orders:write"))
	steps := []struct {
		name   string
		token  string
		status int
	}{
		{"acme 1", acme, 201},
		{"acme 2", acme, 201},
		{"acme 3 passes its own limit", acme, 507},
		{"initech 1", initech, 201},
		{"initech 2 passes the global limit", initech, 507},
	}
	for _, s := range steps {
		r := f.postOrder(s.token, `{"item":"anvil","quantity":1}`)
		if r.status != s.status {
			t.Fatalf("%s: status %d, want %d; body %s", s.name, r.status, s.status, r.body)
		}
		if s.status != 201 {
			problemOf(t, r)
		}
	}
	if got := f.api.store.countByCustomer(); got["acme"] != 5 || got["initech"] != 1 {
		t.Errorf("counts %v", got)
	}
}

// TestConcurrentCreates: under -race, concurrent creates and reads keep every order, with
// unique ids, for the right customer.
func TestConcurrentCreates(t *testing.T) {
	f := newFixture(t)
	tokens := map[string]string{"acme": f.acme(), "initech": f.token(accessClaims("initech-app", "initech", "orders:read orders:write"))}
	const perCustomer = 20
	var wg sync.WaitGroup
	errs := make(chan string, 4*perCustomer)
	for customer, tok := range tokens {
		for i := range perCustomer {
			wg.Go(func() {
				r := f.postOrder(tok, fmt.Sprintf(`{"item":"item %d","quantity":%d}`, i, i+1))
				if r.status != http.StatusCreated {
					errs <- fmt.Sprintf("%s create %d: %d", customer, i, r.status)
				}
				if r := f.do(http.MethodGet, "/api/orders", tok, nil); r.status != http.StatusOK {
					errs <- fmt.Sprintf("%s list: %d", customer, r.status)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	seen := map[string]bool{}
	for customer, tok := range tokens {
		var l orderList
		jsonOf(t, f.do(http.MethodGet, "/api/orders", tok, nil), &l)
		created := 0
		for _, o := range l.Orders {
			if o.Customer != customer || seen[o.ID] {
				t.Errorf("order %+v in %s's list", o, customer)
			}
			seen[o.ID] = true
			if strings.HasPrefix(o.ID, "O-") {
				created++
			}
		}
		if created != perCustomer {
			t.Errorf("%s has %d created orders, want %d", customer, created, perCustomer)
		}
	}
}

// TestOwnerPolicyDeniesByDefault checks the policy on its own, including inputs the handlers
// never let through.
func TestOwnerPolicyDeniesByDefault(t *testing.T) {
	f := newFixture(t)
	order := map[string]any{"id": "A-1001", "customer": "acme", "status": "shipped"}
	tests := []struct {
		name     string
		claims   map[string]any
		resource map[string]any
		want     bool
	}{
		{"owner", map[string]any{"customer_id": "acme"}, order, true},
		{"other customer", map[string]any{"customer_id": "globex"}, order, false},
		{"no claim", map[string]any{}, order, false},
		{"numeric claim", map[string]any{"customer_id": 7}, order, false},
		{"list claim", map[string]any{"customer_id": []any{"acme"}}, order, false},
		{"case differs", map[string]any{"customer_id": "ACME"}, order, false},
		{"no resource", map[string]any{"customer_id": "acme"}, nil, false},
		{"missing order placeholder", map[string]any{"customer_id": ""}, noOrder, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := jwtverify.PolicyInput{Claims: &jwtverify.Claims{Raw: tc.claims}, Resource: tc.resource}
			got, _ := f.api.owner.Allow(t.Context(), in)
			if got != tc.want {
				t.Errorf("Allow = %v, want %v", got, tc.want)
			}
		})
	}
}
