package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/portcullis/portcullis/internal/store"
)

func sampleClient(id string) store.Client {
	return store.Client{
		ID:                     id,
		Owner:                  "owner-1",
		Source:                 "cli",
		SecretHash:             "$hmac-sha256$v1$c2FsdA$aGFzaA",
		AuthMethod:             "client_secret_basic",
		JWKS:                   `{"keys":[{"kty":"EC","crv":"P-256","x":"x","y":"y"}]}`,
		JWKSURI:                "https://client.example/jwks.json",
		GrantTypes:             []string{"client_credentials", "refresh_token"},
		Scopes:                 []string{"orders:read", "orders:write"},
		Audience:               []string{"https://api.example"},
		Claims:                 map[string]string{"customer_id": "acme", "tier": "gold"},
		TokenFormat:            "jwt",
		Internal:               true,
		Introspect:             true,
		RedirectURIs:           []string{"https://client.example/cb"},
		PostLogoutRedirectURIs: []string{"https://client.example/signed-out", "https://client.example/bye"},
		RequirePAR:             true,
		Disabled:               true,
		CreatedAt:              base,
		UpdatedAt:              base.Add(90 * time.Second),
	}
}

func configClient(id string, scopes ...string) store.Client {
	c := sampleClient(id)
	c.Source = "config"
	c.Owner = "config"
	c.Scopes = scopes
	return c
}

func clientIDs(t *testing.T, s store.Store) []string {
	t.Helper()
	cs, err := s.ListClients(t.Context())
	must(t, "list clients", err)
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID+"/"+c.Source)
	}
	return ids
}

var clientTests = []test{
	{"get_not_found", func(t *testing.T, s store.Store) {
		_, err := s.GetClient(t.Context(), "nobody")
		wantErr(t, "get unknown", err, store.ErrNotFound)
		for name, k := range badKeys {
			_, err := s.GetClient(t.Context(), k)
			wantErr(t, "get "+name, err, store.ErrNotFound)
		}
	}},
	{"round_trip_every_field", func(t *testing.T, s store.Store) {
		c := sampleClient("c1")
		allFieldsSet(t, c)
		must(t, "create", s.CreateClient(t.Context(), c, 0))
		got, err := s.GetClient(t.Context(), "c1")
		must(t, "get", err)
		same(t, "client", c, got)
		list, err := s.ListClients(t.Context())
		must(t, "list", err)
		same(t, "list", []store.Client{c}, list)
	}},
	{"round_trip_minimal", func(t *testing.T, s store.Store) {
		c := store.Client{ID: "min", Source: "cli"}
		must(t, "create", s.CreateClient(t.Context(), c, 0))
		got, err := s.GetClient(t.Context(), "min")
		must(t, "get", err)
		same(t, "client", c, got, cmpopts.EquateEmpty())
	}},
	{"create_duplicate", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c1"), 0))
		other := sampleClient("c1")
		other.Owner = "someone-else"
		wantErr(t, "create again", s.CreateClient(t.Context(), other, 0), store.ErrDuplicate)
		got, err := s.GetClient(t.Context(), "c1")
		must(t, "get", err)
		same(t, "client after duplicate", sampleClient("c1"), got)
	}},
	{"invalid_input_writes_nothing", func(t *testing.T, s store.Store) {
		for name, k := range badKeys {
			c := sampleClient(k)
			wantErr(t, "create "+name, s.CreateClient(t.Context(), c, 0), store.ErrInvalid)
			wantErr(t, "create capped "+name, s.CreateClient(t.Context(), c, 5), store.ErrInvalid)
		}
		c := sampleClient("c1")
		c.Scopes = []string{"ok", "bad\x00"}
		wantErr(t, "create with NUL in scope", s.CreateClient(t.Context(), c, 0), store.ErrInvalid)
		c = sampleClient("c1")
		c.PostLogoutRedirectURIs = []string{"https://client.example/\x00"}
		wantErr(t, "create with NUL in a post-logout redirect uri", s.CreateClient(t.Context(), c, 0), store.ErrInvalid)
		same(t, "clients", []string(nil), clientIDs(t, s))
	}},
	{"update_applies", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c1"), 0))
		var seen store.Client
		got, err := s.UpdateClient(t.Context(), "c1", func(c store.Client) (store.Client, error) {
			seen = c
			c.Scopes = append(c.Scopes, "reports:read")
			c.Disabled = false
			c.UpdatedAt = base.Add(time.Hour)
			return c, nil
		})
		must(t, "update", err)
		same(t, "fn input", sampleClient("c1"), seen)
		want := sampleClient("c1")
		want.Scopes = append(want.Scopes, "reports:read")
		want.Disabled = false
		want.UpdatedAt = base.Add(time.Hour)
		same(t, "returned", want, got)
		stored, err := s.GetClient(t.Context(), "c1")
		must(t, "get", err)
		same(t, "stored", want, stored)
	}},
	{"update_fn_error_aborts", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c1"), 0))
		_, err := s.UpdateClient(t.Context(), "c1", func(c store.Client) (store.Client, error) {
			c.Scopes = nil
			c.Disabled = false
			return c, errFromFn
		})
		wantErr(t, "update", err, errFromFn)
		got, err := s.GetClient(t.Context(), "c1")
		must(t, "get", err)
		same(t, "client after aborted update", sampleClient("c1"), got)
	}},
	{"update_invalid_result_aborts", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c1"), 0))
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c2"), 0))
		for name, fn := range map[string]func(store.Client) (store.Client, error){
			"changed_id":   func(c store.Client) (store.Client, error) { c.ID = "c2"; c.Owner = "x"; return c, nil },
			"nul_in_owner": func(c store.Client) (store.Client, error) { c.Owner = "x\x00"; return c, nil },
		} {
			_, err := s.UpdateClient(t.Context(), "c1", fn)
			wantErr(t, name, err, store.ErrInvalid)
		}
		for _, id := range []string{"c1", "c2"} {
			got, err := s.GetClient(t.Context(), id)
			must(t, "get", err)
			same(t, id, sampleClient(id), got)
		}
	}},
	{"update_not_found", func(t *testing.T, s store.Store) {
		called := false
		_, err := s.UpdateClient(t.Context(), "nobody", func(c store.Client) (store.Client, error) {
			called = true
			return c, nil
		})
		wantErr(t, "update unknown", err, store.ErrNotFound)
		if called {
			t.Fatal("fn was called for an unknown client")
		}
		same(t, "clients", []string(nil), clientIDs(t, s))
	}},
	{"concurrent_updates_all_apply", func(t *testing.T, s store.Store) {
		c := sampleClient("c1")
		c.Scopes = nil
		must(t, "create", s.CreateClient(t.Context(), c, 0))
		errs := race(s, concurrency, func(i int) error {
			_, err := s.UpdateClient(t.Context(), "c1", func(c store.Client) (store.Client, error) {
				c.Scopes = append(c.Scopes, id("scope", i))
				return c, nil
			})
			return err
		})
		if n := winners(t, errs); n != concurrency {
			t.Fatalf("%d of %d updates succeeded", n, concurrency)
		}
		got, err := s.GetClient(t.Context(), "c1")
		must(t, "get", err)
		slices.Sort(got.Scopes)
		var want []string
		for i := range concurrency {
			want = append(want, id("scope", i))
		}
		same(t, "scopes (a lost update drops one)", want, got.Scopes)
	}},
	{"delete", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c1"), 0))
		must(t, "create", s.CreateClient(t.Context(), sampleClient("c2"), 0))
		must(t, "delete", s.DeleteClient(t.Context(), "c1"))
		_, err := s.GetClient(t.Context(), "c1")
		wantErr(t, "get deleted", err, store.ErrNotFound)
		wantErr(t, "delete again", s.DeleteClient(t.Context(), "c1"), store.ErrNotFound)
		same(t, "clients", []string{"c2/cli"}, clientIDs(t, s))
	}},
	{"list_ordered_by_id", func(t *testing.T, s store.Store) {
		for _, id := range []string{"b", "a", "c"} {
			must(t, "create", s.CreateClient(t.Context(), sampleClient(id), 0))
		}
		same(t, "clients", []string{"a/cli", "b/cli", "c/cli"}, clientIDs(t, s))
	}},
	{"owner_cap", func(t *testing.T, s store.Store) {
		for i := range 3 {
			must(t, "create", s.CreateClient(t.Context(), sampleClient(id("a", i)), 3))
		}
		wantErr(t, "fourth", s.CreateClient(t.Context(), sampleClient("a-03"), 3), store.ErrLimit)
		other := sampleClient("b-00")
		other.Owner = "owner-2"
		must(t, "other owner", s.CreateClient(t.Context(), other, 3))
		must(t, "no cap", s.CreateClient(t.Context(), sampleClient("a-04"), 0))
		wantErr(t, "over cap", s.CreateClient(t.Context(), sampleClient("a-05"), 4), store.ErrLimit)
		_, err := s.GetClient(t.Context(), "a-03")
		wantErr(t, "refused client", err, store.ErrNotFound)
	}},
	{"owner_cap_concurrent", func(t *testing.T, s store.Store) {
		const limit = 5
		errs := race(s, concurrency, func(i int) error {
			return s.CreateClient(t.Context(), sampleClient(id("c", i)), limit)
		})
		if n := winners(t, errs, store.ErrLimit); n != limit {
			t.Fatalf("%d creations succeeded with a cap of %d", n, limit)
		}
		if n := len(clientIDs(t, s)); n != limit {
			t.Fatalf("%d clients stored with a cap of %d", n, limit)
		}
	}},
	{"sync_config", func(t *testing.T, s store.Store) {
		must(t, "create cli client", s.CreateClient(t.Context(), sampleClient("cli-1"), 0))
		must(t, "sync 1", s.SyncConfigClients(t.Context(), []store.Client{configClient("a", "x"), configClient("b", "x")}))
		same(t, "after sync 1", []string{"a/config", "b/config", "cli-1/cli"}, clientIDs(t, s))

		b2 := configClient("b", "y", "z")
		must(t, "sync 2", s.SyncConfigClients(t.Context(), []store.Client{b2, configClient("c", "x")}))
		same(t, "after sync 2", []string{"b/config", "c/config", "cli-1/cli"}, clientIDs(t, s))
		got, err := s.GetClient(t.Context(), "b")
		must(t, "get b", err)
		same(t, "replaced b", b2, got)
		got, err = s.GetClient(t.Context(), "cli-1")
		must(t, "get cli-1", err)
		same(t, "untouched cli client", sampleClient("cli-1"), got)

		must(t, "sync empty", s.SyncConfigClients(t.Context(), nil))
		same(t, "after sync 3", []string{"cli-1/cli"}, clientIDs(t, s))
	}},
	{"sync_config_id_of_other_source", func(t *testing.T, s store.Store) {
		must(t, "create cli client", s.CreateClient(t.Context(), sampleClient("taken"), 0))
		must(t, "sync 1", s.SyncConfigClients(t.Context(), []store.Client{configClient("a", "x")}))
		before := clientIDs(t, s)
		err := s.SyncConfigClients(t.Context(), []store.Client{configClient("new", "x"), configClient("taken", "x")})
		wantErr(t, "sync over a cli client", err, store.ErrDuplicate)
		same(t, "clients after refused sync", before, clientIDs(t, s))
		got, err := s.GetClient(t.Context(), "taken")
		must(t, "get", err)
		same(t, "cli client", sampleClient("taken"), got)
	}},
	{"sync_config_invalid_writes_nothing", func(t *testing.T, s store.Store) {
		must(t, "sync 1", s.SyncConfigClients(t.Context(), []store.Client{configClient("a", "x")}))
		before := clientIDs(t, s)
		for name, cs := range map[string][]store.Client{
			"repeated_id": {configClient("b", "x"), configClient("b", "y")},
			"empty_id":    {configClient("b", "x"), configClient("", "y")},
			"cli_source":  {configClient("b", "x"), sampleClient("c")},
		} {
			wantErr(t, name, s.SyncConfigClients(t.Context(), cs), store.ErrInvalid)
			same(t, "clients after "+name, before, clientIDs(t, s))
		}
	}},
}
