package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/config"
)

// withMethodScopesOnly configures the orders route as the demo does: method_scopes for GET
// and POST, no route-level scopes.
func withMethodScopesOnly() harnessOpt {
	return withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Routes[0].Auth.Scopes = nil
		c.Gateway.Routes[0].Auth.MethodScopes = map[string][]string{"GET": {"orders:read"}, "POST": {"orders:write"}}
	})
}

// TestHeadNeedsGetScopes: HEAD is served by the GET route, so it needs what GET needs. A token
// that may only write must not learn (through HEAD) what a read would show.
func TestHeadNeedsGetScopes(t *testing.T) {
	h := newHarness(t, withMethodScopesOnly())
	read, write := h.opaque("orders:read"), h.opaque("orders:write")
	tests := []struct {
		name      string
		method    string
		token     string
		status    int
		challenge string
	}{
		{"HEAD without the GET scope", "HEAD", write, http.StatusForbidden, `Bearer error="insufficient_scope", scope="orders:read"`},
		{"GET without the GET scope", "GET", write, http.StatusForbidden, `Bearer error="insufficient_scope", scope="orders:read"`},
		{"HEAD with the GET scope", "HEAD", read, http.StatusOK, ""},
		{"POST with its scope", "POST", write, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := h.do(tt.method, "/api/orders", tt.token, nil, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s: status %d, want %d", tt.method, resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			select {
			case s := <-h.seen:
				if tt.status != http.StatusOK || s.Method != tt.method {
					t.Errorf("the upstream saw %s %s", s.Method, s.Path)
				}
			default:
				if tt.status == http.StatusOK {
					t.Error("the upstream saw nothing")
				}
			}
		})
	}
}

// TestMethodScopesMustCoverEveryMethod: without auth.scopes, a method that method_scopes does
// not name would need no scope at all, so such a route does not load (New and Reload), and the
// error names the route's path in the file.
func TestMethodScopesMustCoverEveryMethod(t *testing.T) {
	h := newHarness(t, withMethodScopesOnly())
	tests := []struct {
		name    string
		methods []string
		scopes  map[string][]string
		want    string // "" loads
	}{
		{"GET and POST covered, HEAD through GET", []string{"GET", "POST"}, map[string][]string{"GET": {"a"}, "POST": {"b"}}, ""},
		{"explicit HEAD through GET", []string{"GET", "HEAD"}, map[string][]string{"GET": {"a"}}, ""},
		{"GET not covered", []string{"GET", "POST"}, map[string][]string{"POST": {"b"}}, "gateway.routes[0].auth.method_scopes: no entry for GET, HEAD while auth.scopes is empty"},
		{"HEAD alone not covered", []string{"HEAD", "POST"}, map[string][]string{"POST": {"b"}}, "gateway.routes[0].auth.method_scopes: no entry for HEAD while"},
		{"unrestricted methods", nil, map[string][]string{"GET": {"a"}, "POST": {"b"}}, "gateway.routes[0].auth.method_scopes: no entry for PUT, PATCH, DELETE, OPTIONS while"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *h.cfg
			gw := *h.cfg.Gateway
			gw.Routes = append([]config.Route{}, h.cfg.Gateway.Routes...)
			gw.Routes[0].Match.Methods = tt.methods
			gw.Routes[0].Auth.MethodScopes = tt.scopes
			gw.Routes[0].CORS = nil
			c.Gateway = &gw
			g, err := New(t.Context(), Options{Config: &c})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				_ = g.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
			if err := h.gw.Reload(&c); err == nil {
				t.Fatal("Reload accepted it")
			}
		})
	}
	// The running configuration still refuses HEAD without the GET scope.
	if resp, _ := h.do("HEAD", "/api/orders", h.opaque("orders:write"), nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after refused reloads: HEAD status %d", resp.StatusCode)
	}
}
