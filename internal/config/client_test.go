package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestPublicClientRules: what a public client (auth_method none) may not be registered
// for, because it proves nothing about itself.
func TestPublicClientRules(t *testing.T) {
	c, err := Parse([]byte(validIssuerYAML), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	public := Client{ID: "spa", AuthMethod: "none", GrantTypes: []string{"authorization_code"}, Scopes: []string{"orders:read"},
		RedirectURIs: []string{"https://spa.example/cb"}, TokenFormat: "opaque"}
	if err := c.Issuer.ValidateClient(public); err != nil {
		t.Fatalf("a valid public client: %v", err)
	}
	for _, tt := range []struct {
		name       string
		edit       func(*Client)
		path, want string
	}{
		{"introspect: true", func(cl *Client) { cl.Introspect = true }, "client.introspect", "public client"},
		{"client_credentials", func(cl *Client) { cl.GrantTypes = append(cl.GrantTypes, "client_credentials") }, "client.grant_types", "public client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := public
			cl.GrantTypes = append([]string(nil), public.GrantTypes...)
			tt.edit(&cl)
			var ps Problems
			if err := c.Issuer.ValidateClient(cl); !errors.As(err, &ps) || !has(ps, tt.path, 0, tt.want) {
				t.Errorf("want %s %q; got %v", tt.path, tt.want, err)
			}
		})
	}
}

// TestPostLogoutRedirectURIsDecode: the file's post_logout_redirect_uris reach the client,
// apart from its redirect_uris.
func TestPostLogoutRedirectURIsDecode(t *testing.T) {
	y := strings.Replace(validIssuerYAML, "      claims: { customer_id: acme }\n", "      claims: { customer_id: acme }\n"+
		"    - id: web\n      auth_method: none\n      grant_types: [authorization_code]\n      scopes: [orders:read]\n"+
		"      redirect_uris: [\"https://web.example/cb\"]\n      post_logout_redirect_uris: [\"https://web.example/bye\"]\n", 1)
	c, err := Parse([]byte(y), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	web := c.Issuer.Clients[1]
	if !slices.Equal(web.PostLogoutRedirectURIs, []string{"https://web.example/bye"}) || !slices.Equal(web.RedirectURIs, []string{"https://web.example/cb"}) {
		t.Fatalf("decoded %+v", web)
	}
}
