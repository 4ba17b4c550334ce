package gateway

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testRoute is a route reduced to what matching reads.
type testRoute struct {
	name, host, prefix, pattern string
	methods                     []string
}

func compileTestRoutes(t testing.TB, trs []testRoute) *table {
	t.Helper()
	var routes []*route
	for _, tr := range trs {
		rt := &route{name: tr.name}
		if tr.host != "" {
			rt.host = hostSpec{name: strings.ToLower(tr.host)}
			if strings.HasPrefix(tr.host, "*.") {
				rt.host = hostSpec{name: strings.ToLower(tr.host[1:]), wildcard: true}
			}
		}
		var err error
		if tr.prefix != "" {
			rt.path, err = compilePath(tr.prefix, true)
		} else {
			rt.path, err = compilePath(tr.pattern, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.methods) == 0 {
			rt.methods = allMethods
		}
		for _, m := range tr.methods {
			rt.methods |= 1 << methodIndex(m)
		}
		routes = append(routes, rt)
	}
	tbl, err := newTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

var matchRoutes = []testRoute{
	{name: "root", prefix: "/"},
	{name: "api", prefix: "/api"},
	{name: "orders-read", prefix: "/api/orders", methods: []string{"GET"}},
	{name: "orders-write", prefix: "/api/orders", methods: []string{"POST", "PUT"}},
	{name: "order", pattern: "/api/orders/{id}", methods: []string{"GET", "DELETE"}},
	{name: "order-items", pattern: "/api/orders/{id}/items/{item}"},
	{name: "order-special", pattern: "/api/orders/special", methods: []string{"GET"}},
	{name: "files", pattern: "/files/{rest...}"},
	{name: "exact-root", pattern: "/"},
	{name: "trailing", pattern: "/docs/"},
	{name: "admin-host", host: "admin.example", prefix: "/api"},
	{name: "wild-host", host: "*.tenants.example", prefix: "/api/orders"},
}

func TestMatch(t *testing.T) {
	tbl := compileTestRoutes(t, matchRoutes)
	tests := []struct {
		host, path, method string
		want               string // route name, "404" or "405:Allow"
	}{
		{"x", "/", "GET", "exact-root"},
		{"x", "/anything", "GET", "root"},
		{"x", "/api", "GET", "api"},
		{"x", "/apix", "GET", "root"},
		{"x", "/api/orders", "GET", "orders-read"},
		{"x", "/api/orders", "HEAD", "orders-read"},
		{"x", "/api/orders", "POST", "orders-write"},
		{"x", "/api/orders", "DELETE", "405:GET, HEAD, POST, PUT"},
		{"x", "/api/orders/", "GET", "orders-read"},
		{"x", "/api/orders/7", "GET", "order"},
		{"x", "/api/orders/7", "DELETE", "order"},
		{"x", "/api/orders/7", "POST", "405:GET, HEAD, DELETE"},
		{"x", "/api/orders/special", "GET", "order-special"},
		{"x", "/api/orders/7/items/3", "PATCH", "order-items"},
		{"x", "/api/orders/7/items", "GET", "orders-read"},
		{"x", "/api/orders/7/items/", "GET", "orders-read"},
		{"x", "/api/orders/7/items/3/x", "GET", "orders-read"},
		{"x", "/api/ordersX", "GET", "api"},
		{"x", "/files/", "GET", "files"},
		{"x", "/files/a/b/c", "GET", "files"},
		{"x", "/files", "GET", "root"},
		{"x", "/docs/", "GET", "trailing"},
		{"x", "/docs", "GET", "root"},
		{"x", "/api/orders", "TRACE", "405:GET, HEAD, POST, PUT"},
		{"admin.example", "/api/orders", "GET", "admin-host"},
		{"ADMIN.example", "/api", "GET", "admin-host"},
		{"admin.example.evil", "/api", "GET", "api"},
		{"a.tenants.example", "/api/orders/1", "GET", "wild-host"},
		{"a.b.tenants.example", "/api/orders/1", "GET", "order"},
		{"tenants.example", "/api/orders/1", "GET", "order"},
		{".tenants.example", "/api/orders/1", "GET", "order"},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+tt.method+" "+tt.path, func(t *testing.T) {
			got := "404"
			if g := tbl.lookup(tt.host, tt.path); g != nil {
				if rt := g.route(tt.method); rt != nil {
					got = rt.name
				} else {
					got = "405:" + g.allow
				}
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMatchNoFallbackToALooserRoute(t *testing.T) {
	// A more specific route refusing a method must not hand the request to a looser one.
	tbl := compileTestRoutes(t, []testRoute{
		{name: "public", prefix: "/"},
		{name: "orders", prefix: "/api/orders", methods: []string{"GET"}},
	})
	g := tbl.lookup("x", "/api/orders/1")
	if g == nil || g.route("POST") != nil || g.allow != "GET, HEAD" {
		t.Fatalf("POST /api/orders/1 must be 405 on the orders route, got %+v", g)
	}
}

func TestOverlappingRoutesRefused(t *testing.T) {
	routes := []*route{
		{name: "a", methods: 1 << methodIndex("GET")},
		{name: "b", methods: allMethods},
	}
	for _, r := range routes {
		var err error
		if r.path, err = compilePath("/x/{id}", false); err != nil {
			t.Fatal(err)
		}
	}
	routes[1].path, _ = compilePath("/x/{other}", false)
	if _, err := newTable(routes); err == nil {
		t.Fatal("two routes for GET /x/{} were accepted")
	}
}

func TestParams(t *testing.T) {
	spec, err := compilePath("/a/{id}/b/{rest...}", false)
	if err != nil {
		t.Fatal(err)
	}
	got := spec.params("/a/7/b/x/y")
	if diff := cmp.Diff(map[string]string{"id": "7", "rest": "x/y"}, got); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
}

func TestCompilePathRefuses(t *testing.T) {
	for _, p := range []string{"", "a", "/a/", "/a/../b", "/a//b", "/a%2f", "/a;b"} {
		if _, err := compilePath(p, true); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	for _, p := range []string{"/a/{", "/a/{}", "/{x}/{x}", "/{r...}/x", "/a/b{c}", "/a//b", "/a/../b", "/a%20"} {
		if _, err := compilePath(p, false); err == nil {
			t.Errorf("pattern %q accepted", p)
		}
	}
}

// referenceMatch is a deliberately naive matcher: split both sides on "/" and compare.
func referenceMatch(tr testRoute, host, path string) bool {
	switch {
	case tr.host == "":
	case strings.HasPrefix(tr.host, "*."):
		suffix := tr.host[1:]
		if !strings.HasSuffix(strings.ToLower(host), suffix) {
			return false
		}
		label := host[:len(host)-len(suffix)]
		if label == "" || strings.Contains(label, ".") {
			return false
		}
	default:
		if !strings.EqualFold(host, tr.host) {
			return false
		}
	}
	if tr.prefix != "" {
		return tr.prefix == "/" || path == tr.prefix || strings.HasPrefix(path, tr.prefix+"/")
	}
	ps := strings.Split(path, "/")
	qs := strings.Split(tr.pattern, "/")
	for i, q := range qs {
		if strings.HasSuffix(q, "...}") {
			return len(ps) > i
		}
		if i >= len(ps) {
			return false
		}
		if strings.HasPrefix(q, "{") {
			if ps[i] == "" {
				return false
			}
			continue
		}
		if q != ps[i] {
			return false
		}
	}
	return len(ps) == len(qs)
}

// FuzzMatchRoute checks the table against the naive reference: a request matches some group
// exactly when the reference says some route matches, and the group chosen matches it.
func FuzzMatchRoute(f *testing.F) {
	for _, s := range []struct{ host, path, method string }{
		{"x", "/api/orders/7", "GET"}, {"admin.example", "/api", "POST"}, {"a.tenants.example", "/api/orders", "GET"},
		{"x", "/files/", "GET"}, {"x", "/docs/", "HEAD"}, {"x", "/", "OPTIONS"},
	} {
		f.Add(s.host, s.path, s.method)
	}
	tbl := compileTestRoutes(f, matchRoutes)
	// Without the catch-all "/" routes, 404 is reachable too.
	narrow := compileTestRoutes(f, matchRoutes[1:7])
	f.Fuzz(func(t *testing.T, host, rawPath, method string) {
		path, err := NormalizePath(rawPath)
		if err != nil {
			return
		}
		for i, set := range [][]testRoute{matchRoutes, matchRoutes[1:7]} {
			tb := tbl
			if i == 1 {
				tb = narrow
			}
			g := tb.lookup(host, path)
			any := false
			for _, tr := range set {
				if referenceMatch(tr, host, path) {
					any = true
				}
			}
			if (g != nil) != any {
				t.Fatalf("set %d: lookup(%q, %q) = %v, reference says a match is %v", i, host, path, g != nil, any)
			}
			if g == nil {
				continue
			}
			if !g.host.match(host) || !g.path.match(path) {
				t.Fatalf("chosen group %s does not match %q %q", g.path.source, host, path)
			}
			if rt := g.route(method); rt != nil && methodIndex(method) < 0 {
				t.Fatalf("method %q routed", method)
			}
			if !g.path.prefix {
				// Parameters put back into the pattern give the path again.
				params := g.path.params(path)
				var b strings.Builder
				for _, s := range g.path.segs {
					b.WriteByte('/')
					switch s.kind {
					case segLiteral:
						b.WriteString(s.lit)
					default:
						b.WriteString(params[s.name])
					}
				}
				if b.Len() == 0 {
					b.WriteByte('/')
				}
				if b.String() != path {
					t.Fatalf("params of %q under %s rebuild %q", path, g.path.source, b.String())
				}
			}
		}
	})
}
