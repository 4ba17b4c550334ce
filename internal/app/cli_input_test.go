package app

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/portcullis/portcullis/internal/store"
)

// storeState is everything the administration commands may write.
type storeState struct {
	Clients []store.Client
	Users   []store.User
	Keys    []store.SigningKey
}

func (s *userSetup) state(t *testing.T) storeState {
	t.Helper()
	db := s.db(t)
	defer db.Close()
	var (
		st  storeState
		err error
	)
	if st.Clients, err = db.ListClients(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st.Users, err = db.ListUsers(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st.Keys, err = db.ListKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

// refused runs a command that must fail with usage exit 2, one line on stderr naming the
// command, nothing on stdout (no secret, no id) and the store exactly as before.
func (s *userSetup) refused(t *testing.T, prefix, want, stdin string, args ...string) {
	t.Helper()
	before := s.state(t)
	code, stdout, stderr := s.run(t, stdin, args...)
	if code != ExitUsage {
		t.Errorf("exit %d, want %d\nstderr: %s", code, ExitUsage, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout: %q, want nothing", stdout)
	}
	if !strings.HasPrefix(stderr, prefix) || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr: %q, want one line starting %q with %q", stderr, prefix, want)
	}
	if diff := cmp.Diff(before, s.state(t)); diff != "" {
		t.Errorf("the store changed (-before +after):\n%s", diff)
	}
}

// TestClientsAddRefusesBadInput: every bad clients add exits 2 with one line and writes nothing.
func TestClientsAddRefusesBadInput(t *testing.T) {
	s := newUserSetup(t)
	if code, _, stderr := s.run(t, "", "clients", "add", "--id", "app", "--scopes", "orders:read", "--claim", "customer_id=acme"); code != ExitOK {
		t.Fatalf("clients add app: exit %d: %s", code, stderr)
	}
	add := func(id string, more ...string) []string {
		return append([]string{"clients", "add", "--id", id, "--scopes", "orders:read"}, more...)
	}
	for _, tt := range []struct {
		name, want string
		args       []string
	}{
		{"empty id", "client.id", add("")},
		{"id with a space", "client.id", add("my app")},
		{"id of 10000 characters", "client.id", add(strings.Repeat("a", 10000))},
		{"id with a Cyrillic a", "client.id", add("\u0430pp")},
		{"id with a control character", "client.id", add("app\x1b[2J")},
		{"unknown scope", "not defined", add("x", "--scopes", "orders:read,admin")},
		{"existing id", `a client "app" already exists`, add("app", "--claim", "customer_id=globex")},
		{"id of a config client", "defined in the config file", add("web")},
		{"jwt for an external client", "internal", add("x", "--token-format", "jwt")},
		{"key-based auth method", "auth-method", add("x", "--auth-method", "private_key_jwt")},
		{"claim without value", "NAME=VALUE", add("x", "--claim", "customer_id")},
		{"claim given twice", "--claim customer_id given twice", add("x", "--claim", "customer_id=acme", "--claim", "customer_id=globex")},
		{"audience with NUL", "audience", add("x", "--audience", "api\x00x")},
		{"claim value with NUL", "--claim customer_id: the value must be text", add("x", "--claim", "customer_id=acme\x00x")},
		{"claim value with an escape sequence", "--claim customer_id: the value must be text", add("x", "--claim", "customer_id=acme\x1b[2J")},
		{"claim value not UTF-8", "--claim customer_id: the value is not valid UTF-8", add("x", "--claim", "customer_id=acme\xff")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.refused(t, "portcullis clients add: ", tt.want, "", tt.args...)
		})
	}
}

// TestUsersRefuseBadInput: every bad users command exits 2 with one line and writes nothing;
// in particular no name that compares equal to alice's replaces or shadows her.
func TestUsersRefuseBadInput(t *testing.T) {
	s := newUserSetup(t)
	if code, _, stderr := s.run(t, "correct horse\n", "users", "add", "--username", "alice"); code != ExitOK {
		t.Fatalf("users add alice: exit %d: %s", code, stderr)
	}
	for _, tt := range []struct {
		name, prefix, want, stdin string
		args                      []string
	}{
		{"existing username", "portcullis users add: ", "already exists", "another password\n", []string{"users", "add", "--username", "alice"}},
		{"username in another case", "portcullis users add: ", "already exists", "another password\n", []string{"users", "add", "--username", "ALICE"}},
		{"username in full-width letters", "portcullis users add: ", "already exists", "another password\n", []string{"users", "add", "--username", "\uff41lice"}},
		{"username with a space", "portcullis users add: ", "username", "another password\n", []string{"users", "add", "--username", "al ice"}},
		{"username of 10000 characters", "portcullis users add: ", "username", "another password\n", []string{"users", "add", "--username", strings.Repeat("b", 10000)}},
		{"no username", "portcullis users add: ", "--username is required", "another password\n", []string{"users", "add"}},
		{"empty password", "portcullis users add: ", "no password", "\n", []string{"users", "add", "--username", "bob"}},
		{"short password", "portcullis users add: ", "at least", "short\n", []string{"users", "add", "--username", "bob"}},
		{"huge password", "portcullis users add: ", "at most", strings.Repeat("p", 100000) + "\n", []string{"users", "add", "--username", "bob"}},
		{"set-password of an unknown user", "portcullis users set-password: ", `no user "bob"`, "another password\n", []string{"users", "set-password", "--username", "bob"}},
		{"set-password with an empty password", "portcullis users set-password: ", "no password", "", []string{"users", "set-password", "--username", "alice"}},
		{"disable an unknown user", "portcullis users disable: ", `no user "bob"`, "", []string{"users", "disable", "--username", "bob"}},
		{"enable a name no user can have", "portcullis users enable: ", "no user", "", []string{"users", "enable", "--username", "x\x00y"}},
		{"revoke-consent of an unknown user", "portcullis users revoke-consent: ", "no user", "", []string{"users", "revoke-consent", "--username", "bob", "--client", "web"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.refused(t, tt.prefix, tt.want, tt.stdin, tt.args...)
		})
	}
}

// TestBadConfigIsUsageError: a missing, unreadable or broken --config is exit 2 for every
// command that reads one, with nothing on stdout.
func TestBadConfigIsUsageError(t *testing.T) {
	s := newUserSetup(t)
	broken := filepath.Join(s.dir, "broken.yaml")
	if err := writeFile(broken, []byte("issuer: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []string{filepath.Join(s.dir, "missing.yaml"), s.dir, broken} {
		for _, args := range [][]string{
			{"serve"}, {"keys", "rotate"}, {"keys", "list"}, {"migrate"},
			{"clients", "add", "--id", "x", "--scopes", "orders:read"},
			{"users", "add", "--username", "bob"}, {"users", "list"}, {"users", "disable", "--username", "alice"},
			{"hash-secret"},
		} {
			t.Run(filepath.Base(cfg)+" "+strings.Join(args, " "), func(t *testing.T) {
				code, stdout, stderr := cli(t, strings.Repeat("s", 40)+"\n", append(args, "--config", cfg)...)
				if code != ExitUsage || stdout != "" || stderr == "" {
					t.Errorf("exit %d, want %d\nstdout: %q\nstderr: %q", code, ExitUsage, stdout, stderr)
				}
			})
		}
	}
}

// TestHashSecretRefusesOverlongInput: a secret longer than hash-secret reads is refused, not
// cut to its first 4096 bytes and hashed (a hash no client could ever match).
func TestHashSecretRefusesOverlongInput(t *testing.T) {
	s := newSetup(t)
	for _, args := range [][]string{{"hash-secret", "--config", s.config}, {"hash-secret", "--argon2id"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			for _, stdin := range []string{strings.Repeat("s", 5000) + "\n", strings.Repeat("s", 4097)} {
				code, stdout, stderr := cli(t, stdin, args...)
				if code != ExitUsage || stdout != "" || !strings.HasPrefix(stderr, "portcullis hash-secret: ") || strings.Count(stderr, "\n") != 1 {
					t.Errorf("%d bytes: exit %d\nstdout: %q\nstderr: %q", len(stdin), code, stdout, stderr)
				}
			}
			code, stdout, stderr := cli(t, strings.Repeat("s", 4096)+"\n", args...)
			if code != ExitOK || stdout == "" {
				t.Errorf("4096 bytes: exit %d\nstderr: %q", code, stderr)
			}
		})
	}
}
