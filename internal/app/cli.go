package app

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // something failed at run time
	ExitUsage   = 2 // bad usage or bad config
)

// Version is set at build time with -ldflags "-X github.com/portcullis/portcullis/internal/app.Version=v1.2.3".
var Version = "dev"

const usage = `portcullis: API security platform (OAuth 2 / OpenID Connect server, API gateway,
JWT validation) in one binary.

Usage:
  portcullis <command> [flags]

Commands:
  demo          run a self-contained demo on loopback over HTTPS and print a walkthrough
  serve         run every role the config file configures (issuer, gateway, admin)
  check         validate a config file and report its security posture
  keys rotate   create a successor signing key (published before it signs)
  keys list     list the signing keys and their state
  clients add   register a client and print its generated secret once
  users         add, disable, enable, set-password, list users; revoke-consent
  blocks        list and lift the shared blocks and throttles (cache.driver: redis)
  hash-secret   hash a client secret for portcullis.yaml (secret read from stdin)
  migrate       apply database migrations (PostgreSQL; SQLite migrates itself)
  version       print the version

Run 'portcullis <command> --help' for the flags of a command.
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
`

// env is what a command may touch.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	case "serve":
		return e.serve(rest)
	case "demo":
		return e.demo(rest)
	case "check":
		return e.check(rest)
	case "keys":
		return e.keys(rest)
	case "clients":
		return e.clients(rest)
	case "users":
		return e.users(rest)
	case "blocks":
		return e.blocks(rest)
	case "hash-secret":
		return e.hashSecret(rest)
	case "migrate":
		return e.migrate(rest)
	case "version", "--version":
		return e.version(rest)
	}
	fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", cmd, usage)
	return ExitUsage
}

// flags makes a FlagSet whose --help prints synopsis, description and flags to stdout.
func (e env) flags(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: portcullis %s %s\n\n%s\n", name, synopsis, description)
		if hasFlags(fs) {
			fmt.Fprintln(out, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses args; --help prints to stdout and yields ExitOK, errors ExitUsage.
func (e env) parse(fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return ExitOK, false
	}
	fs.SetOutput(e.stderr)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis %s: %v\n\n", fs.Name(), err)
		fs.Usage()
		return ExitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "portcullis %s: unexpected argument %q\n\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return ExitUsage, false
	}
	return 0, true
}

// loadConfig loads the file or prints its problems; ok is false with the exit code set.
func (e env) loadConfig(path string) (*config.Config, int, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(e.stderr, "%s: %d problem(s):\n", path, len(ps))
			for _, p := range ps {
				fmt.Fprintf(e.stderr, "  %s\n", p)
			}
			return nil, ExitUsage, false
		}
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return nil, ExitUsage, false
	}
	return cfg, 0, true
}

func (e env) serve(args []string) int {
	fs := e.flags("serve", "[--config FILE] [--watch]",
		"Runs every role the config file configures: the issuer, the gateway and the admin\n"+
			"listener (metrics, /healthz, /readyz). SIGHUP reloads the file; with --watch a change\n"+
			"to it does too. A bad new config is reported and the running one stays.\n"+
			"SIGINT or SIGTERM shut down gracefully: in-flight requests finish first.")
	path := fs.String("config", "portcullis.yaml", "config file")
	watch := fs.Bool("watch", false, "reload when the config file changes")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	log := telemetry.NewLogger(e.stderr, cfg.Log.SlogLevel(), cfg.Log.Format)
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "problem", w.String())
	}
	reload := make(chan *config.Config)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go e.reloads(ctx, *path, *watch, log, reload)
	if err := Run(ctx, cfg, Options{Logger: log, Reload: reload, AccessLog: e.stderr}); err != nil {
		log.Error("portcullis stopped", "err", err)
		return ExitFailure
	}
	return ExitOK
}

// reloads sends a freshly loaded config on SIGHUP and, with watch, when the file changes.
func (e env) reloads(ctx context.Context, path string, watch bool, log interface {
	Error(string, ...any)
	Info(string, ...any)
}, out chan<- *config.Config) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	var last time.Time
	if watch {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
		if st, err := os.Stat(path); err == nil {
			last = st.ModTime()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick:
			st, err := os.Stat(path)
			if err != nil || st.ModTime().Equal(last) {
				continue
			}
			last = st.ModTime()
		}
		cfg, err := config.Load(path)
		if err != nil {
			log.Error("config reload refused; the running config stays", "problems", err.Error())
			continue
		}
		select {
		case out <- cfg:
		case <-ctx.Done():
			return
		}
	}
}

func (e env) check(args []string) int {
	fs := e.flags("check", "[--config FILE]",
		"Validates the config file and reports every problem with its path and line (exit 2),\n"+
			"or prints \"ok\" followed by warnings about its security posture: plain HTTP,\n"+
			"long token lifetimes, person-chosen client secrets, JWT access tokens, public routes.")
	path := fs.String("config", "portcullis.yaml", "config file")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		var ps config.Problems
		if !errors.As(err, &ps) {
			fmt.Fprintf(e.stdout, "%s: %v\n", *path, err)
			return ExitUsage
		}
		fmt.Fprintf(e.stdout, "%s: %d problem(s):\n", *path, len(ps))
		for _, p := range ps {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
		return ExitUsage
	}
	fmt.Fprintln(e.stdout, "ok")
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(e.stdout, "warning: %s\n", w)
	}
	return ExitOK
}

// issuerStore opens the store and the key material of an issuer config, for the commands
// that administer it.
func (e env) issuerStore(path string) (*config.Config, *sqlstore.DB, keys.MasterKey, int, bool) {
	cfg, code, ok := e.loadConfig(path)
	if !ok {
		return nil, nil, keys.MasterKey{}, code, false
	}
	if cfg.Issuer == nil {
		fmt.Fprintf(e.stderr, "%s: no issuer section\n", path)
		return nil, nil, keys.MasterKey{}, ExitUsage, false
	}
	mk, err := keys.LoadMasterKey(cfg.Path(cfg.Issuer.Keys.MasterKeyFile), cfg.Issuer.Keys.MasterKeyEnv)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: master key: %v\n", err)
		return nil, nil, keys.MasterKey{}, ExitFailure, false
	}
	db, err := OpenStore(e.ctx, cfg, telemetry.Discard())
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: open store: %v\n", err)
		return nil, nil, keys.MasterKey{}, ExitFailure, false
	}
	return cfg, db, mk, 0, true
}

func (e env) keys(args []string) int {
	if len(args) == 0 || (args[0] != "rotate" && args[0] != "list") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprint(e.stdout, "Usage: portcullis keys rotate|list [flags]\n\nManage the issuer's signing keys. Run 'portcullis keys rotate --help' for details.\n")
			return ExitOK
		}
		fmt.Fprint(e.stderr, "Usage: portcullis keys rotate|list [flags]\n")
		return ExitUsage
	}
	if args[0] == "list" {
		return e.keysList(args[1:])
	}
	fs := e.flags("keys rotate", "[--config FILE] [--immediate] [--retire-old]",
		"Creates a successor signing key. It is published in the JWKS at once and signs after\n"+
			"issuer.keys.publish_ahead, so every verifier knows it first; the old key stays\n"+
			"published until every token it signed has expired. Running servers pick the change\n"+
			"up within 30 seconds. For a compromised key use --immediate --retire-old: the new\n"+
			"key signs at once and tokens signed by old keys stop verifying.")
	path := fs.String("config", "portcullis.yaml", "config file")
	immediate := fs.Bool("immediate", false, "the new key signs at once")
	retire := fs.Bool("retire-old", false, "remove older keys from the JWKS now (needs --immediate)")
	if code, ok := e.parse(fs, args[1:]); !ok {
		return code
	}
	if *retire && !*immediate {
		fmt.Fprintln(e.stderr, "portcullis keys rotate: --retire-old needs --immediate")
		return ExitUsage
	}
	cfg, db, mk, code, ok := e.issuerStore(*path)
	if !ok {
		return code
	}
	defer db.Close()
	m, err := NewKeyManager(e.ctx, cfg, mk, db, nil, telemetry.Discard())
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	k, err := m.Rotate(e.ctx, keys.RotateOptions{Immediate: *immediate, RetireOldNow: *retire})
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(e.stdout, "new key %s (%s): published now, signs from %s\n", k.ID, k.Algorithm, k.SignFrom.UTC().Format(time.RFC3339))
	return ExitOK
}

func (e env) keysList(args []string) int {
	fs := e.flags("keys list", "[--config FILE]", "Lists the signing keys with their state (pending, signing, retired).")
	path := fs.String("config", "portcullis.yaml", "config file")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	_, db, _, code, ok := e.issuerStore(*path)
	if !ok {
		return code
	}
	defer db.Close()
	ks, err := db.ListKeys(e.ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	slices.SortFunc(ks, func(a, b store.SigningKey) int { return a.SignFrom.Compare(b.SignFrom) })
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tSIGNS FROM\tUNPUBLISHED AT")
	for _, k := range ks {
		state := "signing"
		switch {
		case k.SignFrom.After(now):
			state = "pending"
		case !k.RetireAt.IsZero() && !now.Before(k.RetireAt):
			state = "retired"
		}
		removeAt := "-"
		if !k.RemoveAt.IsZero() {
			removeAt = k.RemoveAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, state, k.SignFrom.UTC().Format(time.RFC3339), removeAt)
	}
	_ = tw.Flush()
	return ExitOK
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, p)
	}
	return out
}

func (e env) clients(args []string) int {
	if len(args) == 0 || args[0] != "add" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprint(e.stdout, "Usage: portcullis clients add [flags]\n\nRegister clients in the store. Run 'portcullis clients add --help' for details.\n")
			return ExitOK
		}
		fmt.Fprint(e.stderr, "Usage: portcullis clients add [flags]\n")
		return ExitUsage
	}
	fs := e.flags("clients add", "--id ID --scopes S1,S2 [flags]",
		"Registers a client in the store and prints its secret once: 256 random bits, kept only\n"+
			"as a keyed hash. The scopes must be defined under issuer.scopes in the config file.\n"+
			"Clients defined in the config file itself are managed there.")
	path := fs.String("config", "portcullis.yaml", "config file")
	id := fs.String("id", "", "client id (required)")
	scopes := fs.String("scopes", "", "comma-separated scopes (required)")
	grants := fs.String("grant-types", "client_credentials", "comma-separated grant types")
	method := fs.String("auth-method", "client_secret_basic", "client_secret_basic or client_secret_post")
	format := fs.String("token-format", "opaque", "opaque, or jwt for internal clients")
	internal := fs.Bool("internal", false, "an internal client (may get JWT access tokens)")
	introspect := fs.Bool("introspect", false, "may introspect any token (resource servers)")
	owner := fs.String("owner", "cli", "who owns the client (issuer.limits.max_clients_per_owner applies)")
	audience := fs.String("audience", "", "comma-separated audiences (default: the issuer's)")
	var claims multiFlag
	fs.Var(&claims, "claim", "a claim value NAME=VALUE, asserted for scopes that name the claim (repeatable, once per NAME)")
	if code, ok := e.parse(fs, args[1:]); !ok {
		return code
	}
	if *method != "client_secret_basic" && *method != "client_secret_post" {
		fmt.Fprintln(e.stderr, "portcullis clients add: --auth-method must be client_secret_basic or client_secret_post (key-based clients go in the config file)")
		return ExitUsage
	}
	cfg, db, mk, code, ok := e.issuerStore(*path)
	if !ok {
		return code
	}
	defer db.Close()
	claimMap := map[string]string{}
	for _, c := range claims {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" {
			fmt.Fprintf(e.stderr, "portcullis clients add: --claim %q must be NAME=VALUE\n", c)
			return ExitUsage
		}
		if err := config.CheckClaimValue(v); err != nil {
			fmt.Fprintf(e.stderr, "portcullis clients add: --claim %s: %v\n", k, err)
			return ExitUsage
		}
		if _, dup := claimMap[k]; dup { // the last value must not silently win
			fmt.Fprintf(e.stderr, "portcullis clients add: --claim %s given twice\n", k)
			return ExitUsage
		}
		claimMap[k] = v
	}
	h, err := NewHasher(cfg.Issuer, mk)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	sec := secret.Generate()
	cc := config.Client{
		ID: *id, Owner: *owner, SecretHash: h.HashGenerated(sec), AuthMethod: *method,
		GrantTypes: splitList(*grants), Scopes: splitList(*scopes), Audience: splitList(*audience),
		TokenFormat: *format, Internal: *internal, Introspect: *introspect, Claims: claimMap,
	}
	if len(cc.Scopes) == 0 {
		fmt.Fprintln(e.stderr, "portcullis clients add: --scopes is required")
		return ExitUsage
	}
	if err := cfg.Issuer.ValidateClient(cc); err != nil {
		fmt.Fprintf(e.stderr, "portcullis clients add: %v\n", err)
		return ExitUsage
	}
	// The store may not hold the config file's clients yet (they sync when the server
	// starts): a CLI client under one of their ids would stop the server from starting.
	for _, c := range cfg.Issuer.Clients {
		if c.ID == cc.ID {
			fmt.Fprintf(e.stderr, "portcullis clients add: a client %q is defined in the config file\n", cc.ID)
			return ExitUsage
		}
	}
	now := time.Now().UTC()
	err = db.CreateClient(e.ctx, store.Client{
		ID: cc.ID, Owner: cc.Owner, Source: "cli", SecretHash: cc.SecretHash, AuthMethod: cc.AuthMethod,
		GrantTypes: cc.GrantTypes, Scopes: cc.Scopes, Audience: cc.Audience, Claims: cc.Claims,
		TokenFormat: cc.TokenFormat, Internal: cc.Internal, Introspect: cc.Introspect, CreatedAt: now, UpdatedAt: now,
	}, cfg.Issuer.Limits.MaxClientsPerOwner)
	switch {
	case errors.Is(err, store.ErrDuplicate):
		fmt.Fprintf(e.stderr, "portcullis clients add: a client %q already exists\n", cc.ID)
		return ExitUsage
	case errors.Is(err, store.ErrLimit):
		fmt.Fprintf(e.stderr, "portcullis clients add: owner %q already has the maximum number of clients\n", cc.Owner)
		return ExitUsage
	case errors.Is(err, store.ErrInvalid): // input the store cannot hold, such as a NUL
		fmt.Fprintf(e.stderr, "portcullis clients add: %v\n", err)
		return ExitUsage
	case err != nil:
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(e.stdout, "client_id: %s\nclient_secret: %s\n", cc.ID, sec)
	fmt.Fprintln(e.stderr, "The secret is shown only now; Portcullis keeps only a keyed hash of it.")
	return ExitOK
}

// maxSecretLine is the longest secret hash-secret reads from stdin.
const maxSecretLine = 4096

func (e env) hashSecret(args []string) int {
	fs := e.flags("hash-secret", "[--config FILE] [--generate | --argon2id]",
		"Prints the secret_hash to put in portcullis.yaml. The secret is read from the first\n"+
			"line of stdin, never from the command line (which other users can see).\n"+
			"Generated secrets (--generate makes one and prints it first) get a keyed HMAC-SHA-256\n"+
			"under a pepper derived from the master key, so --config is needed to find the key.\n"+
			"A secret chosen by a person must use --argon2id (slow by design).")
	path := fs.String("config", "portcullis.yaml", "config file (for the master key)")
	generate := fs.Bool("generate", false, "generate a new 256-bit secret, print it, then its hash")
	argon := fs.Bool("argon2id", false, "hash a person-chosen secret with argon2id")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if *generate && *argon {
		fmt.Fprintln(e.stderr, "portcullis hash-secret: --generate and --argon2id exclude each other")
		return ExitUsage
	}
	var sec string
	if *generate {
		sec = secret.Generate()
	} else {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, maxSecretLine+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(e.stderr, "portcullis hash-secret: %v\n", err)
			return ExitFailure
		}
		sec = strings.TrimRight(line, "\r\n")
		if sec == "" {
			fmt.Fprintln(e.stderr, "portcullis hash-secret: no secret on stdin")
			return ExitUsage
		}
		if len(sec) > maxSecretLine { // hashing a cut-off secret would give a hash no client matches
			fmt.Fprintf(e.stderr, "portcullis hash-secret: the secret is longer than %d bytes\n", maxSecretLine)
			return ExitUsage
		}
	}
	if *argon {
		if len(sec) < 12 {
			fmt.Fprintln(e.stderr, "portcullis hash-secret: a secret shorter than 12 characters is too weak")
			return ExitUsage
		}
		fmt.Fprintln(e.stdout, secret.HashArgon2id(sec))
		return ExitOK
	}
	if len(sec) < 32 {
		fmt.Fprintln(e.stderr, "portcullis hash-secret: too short for a keyed hash (under 32 characters); use --generate, or --argon2id for a person-chosen secret")
		return ExitUsage
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	if cfg.Issuer == nil {
		fmt.Fprintf(e.stderr, "%s: no issuer section\n", *path)
		return ExitUsage
	}
	mk, err := keys.LoadMasterKey(cfg.Path(cfg.Issuer.Keys.MasterKeyFile), cfg.Issuer.Keys.MasterKeyEnv)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: master key: %v\n", err)
		return ExitFailure
	}
	h, err := NewHasher(cfg.Issuer, mk)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	if *generate {
		fmt.Fprintf(e.stdout, "secret: %s\n", sec)
		fmt.Fprintf(e.stdout, "secret_hash: %s\n", h.HashGenerated(sec))
		return ExitOK
	}
	fmt.Fprintln(e.stdout, h.HashGenerated(sec))
	return ExitOK
}

func (e env) migrate(args []string) int {
	fs := e.flags("migrate", "[--config FILE] [--status]",
		"Applies pending database migrations (forward only). PostgreSQL deployments run this\n"+
			"before starting new versions unless storage.auto_migrate is true; SQLite migrates at start.")
	path := fs.String("config", "portcullis.yaml", "config file")
	status := fs.Bool("status", false, "only report the schema version and pending migrations")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	o := storeOptions(cfg)
	if *status {
		db, err := sqlstore.Open(e.ctx, o)
		if err != nil {
			fmt.Fprintf(e.stdout, "not current: %v\n", err)
			return ExitFailure
		}
		defer db.Close()
		cur, pending, err := db.MigrationStatus(e.ctx)
		if err != nil {
			fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
			return ExitFailure
		}
		fmt.Fprintf(e.stdout, "schema version %d, %d pending\n", cur, pending)
		return ExitOK
	}
	applied, err := sqlstore.Migrate(e.ctx, o)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis migrate: %v\n", err)
		return ExitFailure
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "schema is current; nothing to apply")
		return ExitOK
	}
	for _, v := range applied {
		fmt.Fprintf(e.stdout, "applied migration %d\n", v)
	}
	return ExitOK
}

func (e env) version(args []string) int {
	fs := e.flags("version", "", "Prints the version, the Go version and the VCS revision when known.")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	v, goVer, rev := Version, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVer = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	fmt.Fprintf(e.stdout, "portcullis %s", v)
	if goVer != "" {
		fmt.Fprintf(e.stdout, " (%s", goVer)
		if rev != "" {
			fmt.Fprintf(e.stdout, ", %s", rev)
		}
		fmt.Fprint(e.stdout, ")")
	}
	fmt.Fprintln(e.stdout)
	return ExitOK
}
