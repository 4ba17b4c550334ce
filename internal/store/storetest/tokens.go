package storetest

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/portcullis/portcullis/internal/store"
)

// sampleToken sets every field. Claims and Extra hold values as encoding/json decodes them,
// which is what the contract promises back.
func sampleToken(hash string) store.Token {
	return store.Token{
		Hash:     hash,
		Kind:     store.KindRefresh,
		Format:   "opaque",
		ClientID: "c1",
		Subject:  "alice",
		Scopes:   []string{"openid", "orders:read"},
		Audience: []string{"https://api.example", "https://other.example"},
		Claims: map[string]any{
			"customer_id": "acme", "level": float64(3), "admin": false,
			"groups": []any{"a", "b"}, "address": map[string]any{"country": "CH"},
		},
		Extra:     map[string]any{"redirect_uri": "https://client.example/cb", "auth_time": float64(1893553445)},
		FamilyID:  "fam-1",
		IssuedAt:  base,
		ExpiresAt: base.Add(time.Hour),
		UsedAt:    base.Add(time.Minute),
		RevokedAt: base.Add(2 * time.Minute),
	}
}

// freshToken is unused and unrevoked, valid for an hour from base.
func freshToken(hash, family string) store.Token {
	t := sampleToken(hash)
	t.FamilyID = family
	t.UsedAt, t.RevokedAt = time.Time{}, time.Time{}
	return t
}

func getToken(t *testing.T, s store.Store, hash string) store.Token {
	t.Helper()
	tok, err := s.GetToken(t.Context(), hash)
	must(t, "get token "+hash, err)
	return tok
}

func absentToken(t *testing.T, s store.Store, hash string) {
	t.Helper()
	_, err := s.GetToken(t.Context(), hash)
	wantErr(t, "get token "+hash, err, store.ErrNotFound)
}

var tokenTests = []test{
	{"get_not_found", func(t *testing.T, s store.Store) {
		absentToken(t, s, "nope")
		for name, k := range badKeys {
			_, err := s.GetToken(t.Context(), k)
			wantErr(t, "get "+name, err, store.ErrNotFound)
		}
	}},
	{"round_trip_every_field", func(t *testing.T, s store.Store) {
		tok := sampleToken("h1")
		allFieldsSet(t, tok)
		must(t, "create", s.CreateToken(t.Context(), tok))
		same(t, "token", tok, getToken(t, s, "h1"))
	}},
	{"round_trip_minimal", func(t *testing.T, s store.Store) {
		tok := store.Token{Hash: "h1", Kind: store.KindAccess, ClientID: "c1", IssuedAt: base, ExpiresAt: base.Add(time.Minute)}
		must(t, "create", s.CreateToken(t.Context(), tok))
		same(t, "token", tok, getToken(t, s, "h1"), cmpopts.EquateEmpty())
	}},
	{"create_duplicate", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), sampleToken("h1")))
		other := freshToken("h1", "fam-2")
		wantErr(t, "create again", s.CreateToken(t.Context(), other), store.ErrDuplicate)
		same(t, "token after duplicate", sampleToken("h1"), getToken(t, s, "h1"))
	}},
	{"invalid_input_writes_nothing", func(t *testing.T, s store.Store) {
		cases := map[string]func(*store.Token){
			"kind":           func(t *store.Token) { t.Kind = "bogus" },
			"no_client":      func(t *store.Token) { t.ClientID = "" },
			"no_expiry":      func(t *store.Token) { t.ExpiresAt = time.Time{} },
			"no_issued_at":   func(t *store.Token) { t.IssuedAt = time.Time{} },
			"subject_nul":    func(t *store.Token) { t.Subject = "a\x00" },
			"unencodable":    func(t *store.Token) { t.Claims = map[string]any{"n": math.Inf(1)} },
			"long_family_id": func(t *store.Token) { t.FamilyID = badKeys["too_long"] },
		}
		for name, k := range badKeys {
			cases["hash_"+name] = func(t *store.Token) { t.Hash = k }
		}
		for name, mutate := range cases {
			tok := sampleToken("h-" + name)
			mutate(&tok)
			wantErr(t, name, s.CreateToken(t.Context(), tok), store.ErrInvalid)
			if tok.Hash != "" {
				absentToken(t, s, tok.Hash)
			}
		}
	}},
	{"revoke", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), freshToken("h1", "")))
		t1, t2 := base.Add(time.Second), base.Add(2*time.Second)
		must(t, "revoke", s.RevokeToken(t.Context(), "h1", t1))
		got := getToken(t, s, "h1")
		same(t, "revoked at", t1, got.RevokedAt)
		if got.Active(base) {
			t.Fatal("a revoked token is active")
		}
		must(t, "revoke again", s.RevokeToken(t.Context(), "h1", t2))
		same(t, "revoked at after second revoke", t1, getToken(t, s, "h1").RevokedAt)
		wantErr(t, "revoke unknown", s.RevokeToken(t.Context(), "nope", t1), store.ErrNotFound)
		wantErr(t, "revoke empty", s.RevokeToken(t.Context(), "", t1), store.ErrNotFound)
	}},
	{"revoke_family", func(t *testing.T, s store.Store) {
		t0, t1 := base.Add(time.Second), base.Add(2*time.Second)
		for _, tok := range []store.Token{freshToken("a1", "A"), freshToken("a2", "A"), freshToken("a3", "A"),
			freshToken("b1", "B"), freshToken("n1", "")} {
			must(t, "create", s.CreateToken(t.Context(), tok))
		}
		must(t, "revoke a3", s.RevokeToken(t.Context(), "a3", t0))
		hashes, err := s.RevokeFamily(t.Context(), "A", t1)
		must(t, "revoke family", err)
		slices.Sort(hashes)
		same(t, "revoked hashes", []string{"a1", "a2"}, hashes)
		for hash, want := range map[string]time.Time{"a1": t1, "a2": t1, "a3": t0, "b1": {}, "n1": {}} {
			same(t, hash+" revoked at", want, getToken(t, s, hash).RevokedAt)
		}
		hashes, err = s.RevokeFamily(t.Context(), "A", t1)
		must(t, "revoke family again", err)
		if len(hashes) != 0 {
			t.Fatalf("second revoke family changed %v, want none", hashes)
		}
		hashes, err = s.RevokeFamily(t.Context(), "nope", t1)
		if err != nil || len(hashes) != 0 {
			t.Fatalf("revoke unknown family: %v, %v; want none, nil", hashes, err)
		}
	}},
	{"revoke_family_empty_id_refused", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), freshToken("n1", "")))
		_, err := s.RevokeFamily(t.Context(), "", base)
		wantErr(t, "revoke family \"\"", err, store.ErrInvalid)
		if !getToken(t, s, "n1").RevokedAt.IsZero() {
			t.Fatal("revoking the empty family revoked a token without family")
		}
	}},
	{"consume", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), freshToken("r1", "F")))
		now := base.Add(time.Minute)
		before, err := s.ConsumeToken(t.Context(), "r1", now, []store.Token{freshToken("r2", "F"), freshToken("a2", "F")})
		must(t, "consume", err)
		same(t, "record before", freshToken("r1", "F"), before)
		want := freshToken("r1", "F")
		want.UsedAt = now
		same(t, "stored", want, getToken(t, s, "r1"))
		same(t, "replacement r2", freshToken("r2", "F"), getToken(t, s, "r2"))
		same(t, "replacement a2", freshToken("a2", "F"), getToken(t, s, "a2"))

		_, err = s.ConsumeToken(t.Context(), "r1", now.Add(time.Second), []store.Token{freshToken("r3", "F")})
		wantErr(t, "consume again", err, store.ErrConflict)
		absentToken(t, s, "r3")
		same(t, "stored after second consume", want, getToken(t, s, "r1"))
	}},
	{"consume_revoked_or_expired_conflicts", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), freshToken("rev", "")))
		must(t, "revoke", s.RevokeToken(t.Context(), "rev", base))
		_, err := s.ConsumeToken(t.Context(), "rev", base.Add(time.Second), []store.Token{freshToken("x1", "")})
		wantErr(t, "consume revoked", err, store.ErrConflict)
		absentToken(t, s, "x1")

		must(t, "create", s.CreateToken(t.Context(), freshToken("exp", "")))
		_, err = s.ConsumeToken(t.Context(), "exp", base.Add(time.Hour), []store.Token{freshToken("x2", "")})
		wantErr(t, "consume at expiry", err, store.ErrConflict)
		absentToken(t, s, "x2")
		if !getToken(t, s, "exp").UsedAt.IsZero() {
			t.Fatal("an expired token was marked used")
		}
	}},
	{"consume_not_found", func(t *testing.T, s store.Store) {
		_, err := s.ConsumeToken(t.Context(), "nope", base, []store.Token{freshToken("x1", "")})
		wantErr(t, "consume unknown", err, store.ErrNotFound)
		absentToken(t, s, "x1")
		_, err = s.ConsumeToken(t.Context(), "", base, nil)
		wantErr(t, "consume empty hash", err, store.ErrNotFound)
	}},
	{"consume_bad_replacement_writes_nothing", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), freshToken("r1", "F")))
		must(t, "create", s.CreateToken(t.Context(), freshToken("taken", "G")))

		bad := freshToken("x2", "F")
		bad.Kind = "bogus"
		_, err := s.ConsumeToken(t.Context(), "r1", base, []store.Token{freshToken("x1", "F"), bad})
		wantErr(t, "invalid replacement", err, store.ErrInvalid)

		_, err = s.ConsumeToken(t.Context(), "r1", base, []store.Token{freshToken("x1", "F"), freshToken("taken", "F")})
		wantErr(t, "replacement hash taken", err, store.ErrDuplicate)

		absentToken(t, s, "x1")
		absentToken(t, s, "x2")
		same(t, "taken", freshToken("taken", "G"), getToken(t, s, "taken"))
		same(t, "r1 still unused", freshToken("r1", "F"), getToken(t, s, "r1"))
	}},
	{"consume_concurrent_one_winner", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateToken(t.Context(), freshToken("r1", "F")))
		errs := race(s, concurrency, func(i int) error {
			_, err := s.ConsumeToken(t.Context(), "r1", base.Add(time.Second), []store.Token{freshToken(id("next", i), "F")})
			return err
		})
		if n := winners(t, errs, store.ErrConflict); n != 1 {
			t.Fatalf("%d consumers won, want exactly 1", n)
		}
		for i, err := range errs {
			_, gerr := s.GetToken(t.Context(), id("next", i))
			if (err == nil) != (gerr == nil) {
				t.Errorf("goroutine %d: consume error %v, but its replacement lookup gave %v", i, err, gerr)
			}
		}
	}},
	{"delete_expired", func(t *testing.T, s store.Store) {
		cut := base.Add(time.Hour)
		for hash, exp := range map[string]time.Time{
			"old": cut.Add(-time.Hour), "just_before": cut.Add(-time.Microsecond), "at": cut, "after": cut.Add(time.Microsecond),
		} {
			tok := freshToken(hash, "")
			tok.ExpiresAt = exp
			must(t, "create", s.CreateToken(t.Context(), tok))
		}
		n, err := s.DeleteExpiredTokens(t.Context(), cut)
		must(t, "delete expired", err)
		if n != 2 {
			t.Fatalf("deleted %d, want 2", n)
		}
		absentToken(t, s, "old")
		absentToken(t, s, "just_before")
		getToken(t, s, "at")
		getToken(t, s, "after")
		n, err = s.DeleteExpiredTokens(t.Context(), cut)
		if err != nil || n != 0 {
			t.Fatalf("second delete: %d, %v; want 0, nil", n, err)
		}
	}},
}
