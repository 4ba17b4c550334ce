package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/portcullis/portcullis/internal/store"
)

func sampleUser(id, name string) store.User {
	return store.User{
		ID:           id,
		Username:     name,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA",
		Disabled:     true,
		TOTPSealed:   []byte{0x01, 0x00, 0xff, 't', 'o', 't', 'p'},
		TOTPLastStep: 42,
		Attributes:   map[string]any{"email": name + "@example.com", "groups": []any{"admins"}, "age": float64(40)},
		// Microseconds: the contract keeps no more, and the change time must not lose them.
		CredentialsChangedAt: base.Add(30*time.Second + 123456*time.Microsecond),
		CreatedAt:            base,
		UpdatedAt:            base.Add(time.Minute),
	}
}

func getUser(t *testing.T, s store.Store, id string) store.User {
	t.Helper()
	u, err := s.GetUser(t.Context(), id)
	must(t, "get user "+id, err)
	return u
}

func useStep(t *testing.T, s store.Store, id string, step int64) bool {
	t.Helper()
	ok, err := s.UseTOTPStep(t.Context(), id, step)
	must(t, "use totp step", err)
	return ok
}

var userTests = []test{
	{"not_found", func(t *testing.T, s store.Store) {
		_, err := s.GetUser(t.Context(), "u1")
		wantErr(t, "get", err, store.ErrNotFound)
		_, err = s.GetUserByName(t.Context(), "alice")
		wantErr(t, "get by name", err, store.ErrNotFound)
		for name, k := range badKeys {
			_, err = s.GetUser(t.Context(), k)
			wantErr(t, "get "+name, err, store.ErrNotFound)
			_, err = s.GetUserByName(t.Context(), k)
			wantErr(t, "get by name "+name, err, store.ErrNotFound)
		}
		_, err = s.UseTOTPStep(t.Context(), "u1", 1)
		wantErr(t, "use totp step", err, store.ErrNotFound)
	}},
	{"round_trip_every_field", func(t *testing.T, s store.Store) {
		u := sampleUser("u1", "Alice")
		allFieldsSet(t, u)
		must(t, "create", s.CreateUser(t.Context(), u))
		same(t, "by id", u, getUser(t, s, "u1"))
		got, err := s.GetUserByName(t.Context(), "Alice")
		must(t, "get by name", err)
		same(t, "by name", u, got)
		list, err := s.ListUsers(t.Context())
		must(t, "list", err)
		same(t, "list", []store.User{u}, list)
	}},
	{"round_trip_without_totp", func(t *testing.T, s store.Store) {
		u := store.User{ID: "u1", Username: "bob", PasswordHash: "$argon2id$x"}
		must(t, "create", s.CreateUser(t.Context(), u))
		same(t, "user", u, getUser(t, s, "u1"), cmpopts.EquateEmpty())
	}},
	{"username_case_insensitive_unique", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateUser(t.Context(), sampleUser("u1", "Alice")))
		for _, name := range []string{"alice", "ALICE", "aLiCe"} {
			got, err := s.GetUserByName(t.Context(), name)
			must(t, "get "+name, err)
			if got.ID != "u1" || got.Username != "Alice" {
				t.Fatalf("get %q gave %q/%q, want u1/Alice as registered", name, got.ID, got.Username)
			}
		}
		wantErr(t, "create ALICE", s.CreateUser(t.Context(), sampleUser("u2", "ALICE")), store.ErrDuplicate)
		_, err := s.GetUser(t.Context(), "u2")
		wantErr(t, "refused user", err, store.ErrNotFound)
		wantErr(t, "create same id", s.CreateUser(t.Context(), sampleUser("u1", "carol")), store.ErrDuplicate)
	}},
	{"update_applies_and_aborts", func(t *testing.T, s store.Store) {
		must(t, "create", s.CreateUser(t.Context(), sampleUser("u1", "alice")))
		must(t, "create", s.CreateUser(t.Context(), sampleUser("u2", "bob")))
		got, err := s.UpdateUser(t.Context(), "u1", func(u store.User) (store.User, error) {
			u.Username = "Alicia"
			u.Disabled = false
			u.TOTPSealed = nil
			return u, nil
		})
		must(t, "update", err)
		want := sampleUser("u1", "alice")
		want.Username, want.Disabled, want.TOTPSealed = "Alicia", false, nil
		same(t, "returned", want, got)
		same(t, "stored", want, getUser(t, s, "u1"))
		_, err = s.GetUserByName(t.Context(), "alice")
		wantErr(t, "old name", err, store.ErrNotFound)

		_, err = s.UpdateUser(t.Context(), "u2", func(u store.User) (store.User, error) {
			u.Disabled = false
			return u, errFromFn
		})
		wantErr(t, "fn error", err, errFromFn)
		_, err = s.UpdateUser(t.Context(), "u2", func(u store.User) (store.User, error) {
			u.Username = "ALICIA"
			u.Disabled = false
			return u, nil
		})
		wantErr(t, "rename to a taken name", err, store.ErrDuplicate)
		_, err = s.UpdateUser(t.Context(), "u2", func(u store.User) (store.User, error) {
			u.ID = "u3"
			return u, nil
		})
		wantErr(t, "change id", err, store.ErrInvalid)
		same(t, "u2 unchanged", sampleUser("u2", "bob"), getUser(t, s, "u2"))
		_, err = s.UpdateUser(t.Context(), "u9", func(u store.User) (store.User, error) { return u, nil })
		wantErr(t, "update unknown", err, store.ErrNotFound)
	}},
	{"credentials_changed_at_set_and_kept", func(t *testing.T, s store.Store) {
		u := sampleUser("u1", "alice")
		u.CredentialsChangedAt = time.Time{}
		must(t, "create", s.CreateUser(t.Context(), u))
		if got := getUser(t, s, "u1").CredentialsChangedAt; !got.IsZero() {
			t.Fatalf("never changed: %v, want the zero time", got)
		}
		changed := base.Add(time.Hour + time.Microsecond)
		got, err := s.UpdateUser(t.Context(), "u1", func(u store.User) (store.User, error) {
			u.PasswordHash = "$argon2id$new"
			u.CredentialsChangedAt = changed
			return u, nil
		})
		must(t, "set", err)
		same(t, "returned", changed, got.CredentialsChangedAt)
		same(t, "stored", changed, getUser(t, s, "u1").CredentialsChangedAt)
		// An update that does not touch it keeps it.
		_, err = s.UpdateUser(t.Context(), "u1", func(u store.User) (store.User, error) {
			u.Attributes = map[string]any{"x": "y"}
			return u, nil
		})
		must(t, "other update", err)
		same(t, "kept", changed, getUser(t, s, "u1").CredentialsChangedAt)
		byName, err := s.GetUserByName(t.Context(), "alice")
		must(t, "by name", err)
		same(t, "by name", changed, byName.CredentialsChangedAt)
	}},
	{"concurrent_updates_all_apply", func(t *testing.T, s store.Store) {
		u := sampleUser("u1", "alice")
		u.Attributes = map[string]any{"n": float64(0)}
		must(t, "create", s.CreateUser(t.Context(), u))
		errs := race(s, concurrency, func(int) error {
			_, err := s.UpdateUser(t.Context(), "u1", func(u store.User) (store.User, error) {
				u.Attributes["n"] = u.Attributes["n"].(float64) + 1
				return u, nil
			})
			return err
		})
		if n := winners(t, errs); n != concurrency {
			t.Fatalf("%d of %d updates succeeded", n, concurrency)
		}
		same(t, "counter (a lost update shows as less)", float64(concurrency), getUser(t, s, "u1").Attributes["n"])
	}},
	{"list_ordered_by_id", func(t *testing.T, s store.Store) {
		for _, u := range []store.User{sampleUser("u2", "bob"), sampleUser("u1", "alice")} {
			must(t, "create", s.CreateUser(t.Context(), u))
		}
		list, err := s.ListUsers(t.Context())
		must(t, "list", err)
		same(t, "list", []store.User{sampleUser("u1", "alice"), sampleUser("u2", "bob")}, list)
	}},
	{"totp_step_monotonic_single_use", func(t *testing.T, s store.Store) {
		u := sampleUser("u1", "alice")
		u.TOTPLastStep = 0
		must(t, "create", s.CreateUser(t.Context(), u))
		for _, tc := range []struct {
			step int64
			want bool
		}{{5, true}, {5, false}, {4, false}, {0, false}, {6, true}, {100, true}, {99, false}} {
			if got := useStep(t, s, "u1", tc.step); got != tc.want {
				t.Fatalf("use step %d: got %v, want %v", tc.step, got, tc.want)
			}
		}
		if got := getUser(t, s, "u1").TOTPLastStep; got != 100 {
			t.Fatalf("last step %d, want 100", got)
		}
	}},
	{"totp_step_concurrent_one_winner", func(t *testing.T, s store.Store) {
		u := sampleUser("u1", "alice")
		u.TOTPLastStep = 0
		must(t, "create", s.CreateUser(t.Context(), u))
		ok := make([]bool, concurrency)
		errs := race(s, concurrency, func(i int) error {
			var err error
			ok[i], err = s.UseTOTPStep(t.Context(), "u1", 7)
			return err
		})
		winners(t, errs)
		n := 0
		for _, o := range ok {
			if o {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d concurrent uses of one step were accepted, want exactly 1", n)
		}
	}},
	{"invalid_input_writes_nothing", func(t *testing.T, s store.Store) {
		for name, k := range badKeys {
			wantErr(t, "id "+name, s.CreateUser(t.Context(), sampleUser(k, "alice")), store.ErrInvalid)
			wantErr(t, "username "+name, s.CreateUser(t.Context(), sampleUser("u1", k)), store.ErrInvalid)
		}
		list, err := s.ListUsers(t.Context())
		must(t, "list", err)
		if len(list) != 0 {
			t.Fatalf("refused creations stored %d users", len(list))
		}
	}},
}
