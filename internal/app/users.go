package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/store"
)

const usersUsage = `Usage: portcullis users <command> [flags]

Manage the people who sign in at the issuer (authorization code flow).

Commands:
  add             add a user; the password is read from stdin, never from the command line
  disable         stop a user from signing in (sessions and refresh tokens end too)
  enable          let a disabled user sign in again
  set-password    replace a user's password (read from stdin); ends earlier sign-ins
  list            list the users
  revoke-consent  forget what a user allowed a client (its refresh tokens stop working)

Run 'portcullis users <command> --help' for the flags of a command.
`

func (e env) users(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usersUsage)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, usersUsage)
		return ExitOK
	case "add":
		return e.usersAdd(args[1:])
	case "disable", "enable":
		return e.usersSetDisabled(args[0], args[1:])
	case "set-password":
		return e.usersSetPassword(args[1:])
	case "list":
		return e.usersList(args[1:])
	case "revoke-consent":
		return e.usersRevokeConsent(args[1:])
	}
	fmt.Fprintf(e.stderr, "portcullis users: unknown command %q\n\n%s", args[0], usersUsage)
	return ExitUsage
}

// readPassword reads the first line of stdin: a password never appears in argv, where other
// users of the machine can read it.
func (e env) readPassword(cmd string) (string, bool) {
	line, err := bufio.NewReader(io.LimitReader(e.stdin, login.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(e.stderr, "portcullis %s: %v\n", cmd, err)
		return "", false
	}
	p := strings.TrimRight(line, "\r\n")
	if p == "" {
		fmt.Fprintf(e.stderr, "portcullis %s: no password on stdin (echo \"$PASSWORD\" | portcullis %s ...)\n", cmd, cmd)
		return "", false
	}
	if err := login.CheckNewPassword(p); err != nil {
		fmt.Fprintf(e.stderr, "portcullis %s: %v\n", cmd, err)
		return "", false
	}
	return p, true
}

// parseAttrs turns NAME=VALUE flags into user attributes. email_verified and
// phone_number_verified take true or false and become booleans (OpenID Connect Core §5.1).
func parseAttrs(attrs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, a := range attrs {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q must be NAME=VALUE", a)
		}
		if err := config.CheckClaimName(k); err != nil {
			return nil, fmt.Errorf("--attr %s: %v", k, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--attr %s given twice", k)
		}
		if k == "email_verified" || k == "phone_number_verified" {
			switch v {
			case "true":
				out[k] = true
			case "false":
				out[k] = false
			default:
				return nil, fmt.Errorf("--attr %s must be true or false", k)
			}
			continue
		}
		out[k] = v
	}
	return out, nil
}

func (e env) usersAdd(args []string) int {
	fs := e.flags("users add", "--username NAME [--attr NAME=VALUE]... [--totp] < password",
		"Adds a user. The password is the first line of stdin (at least 8 characters); it is\n"+
			"stored only as an argon2id hash. Attributes become claims when a granted scope names\n"+
			"them (issuer.scopes.*.claims; profile and email have OpenID Connect defaults):\n"+
			"  --attr name=\"Alice Liddell\" --attr email=alice@example.com --attr customer_id=acme\n"+
			"With --totp the user also needs a code from an authenticator app: the secret and its\n"+
			"otpauth:// URI are printed once; only a sealed copy is kept.")
	path := fs.String("config", "portcullis.yaml", "config file")
	username := fs.String("username", "", "the name the user signs in with (required)")
	withTOTP := fs.Bool("totp", false, "require a TOTP code (RFC 6238) after the password")
	var attrs multiFlag
	fs.Var(&attrs, "attr", "an attribute NAME=VALUE (repeatable)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if *username == "" {
		fmt.Fprintln(e.stderr, "portcullis users add: --username is required")
		return ExitUsage
	}
	attrMap, err := parseAttrs(attrs)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis users add: %v\n", err)
		return ExitUsage
	}
	password, ok := e.readPassword("users add")
	if !ok {
		return ExitUsage
	}
	cfg, db, mk, code, ok := e.issuerStore(*path)
	if !ok {
		return code
	}
	defer db.Close()
	now := time.Now().UTC()
	u := store.User{ID: login.NewUserID(), Username: *username, Attributes: attrMap, CreatedAt: now, UpdatedAt: now}
	if u.PasswordHash, err = login.HashPassword(password); err != nil {
		fmt.Fprintf(e.stderr, "portcullis users add: %v\n", err)
		return ExitUsage
	}
	var enr login.Enrollment
	if *withTOTP {
		t, err := login.NewTOTP(mk.Derive(keys.PurposeTOTP))
		if err != nil {
			fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
			return ExitFailure
		}
		if enr, err = t.Enroll(cfg.Issuer.Login.Effective().TOTPIssuer, u.ID, u.Username); err != nil {
			fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
			return ExitFailure
		}
		u.TOTPSealed = enr.Sealed
	}
	switch err := db.CreateUser(e.ctx, u); {
	case errors.Is(err, store.ErrDuplicate):
		fmt.Fprintf(e.stderr, "portcullis users add: a user %q already exists\n", *username)
		return ExitUsage
	case errors.Is(err, store.ErrInvalid):
		fmt.Fprintf(e.stderr, "portcullis users add: %v\n", err)
		return ExitUsage
	case err != nil:
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(e.stdout, "username: %s\nid: %s\n", u.Username, u.ID)
	if *withTOTP {
		fmt.Fprintf(e.stdout, "totp_secret: %s\ntotp_uri: %s\n", enr.Secret, enr.URI)
		fmt.Fprintln(e.stderr, "Add the secret to an authenticator app now: it is shown only once.")
	}
	return ExitOK
}

// userByName opens the store and finds a user, printing why not.
func (e env) userByName(cmd, path, username string) (*config.Config, store.Store, func(), store.User, int, bool) {
	if username == "" {
		fmt.Fprintf(e.stderr, "portcullis %s: --username is required\n", cmd)
		return nil, nil, nil, store.User{}, ExitUsage, false
	}
	cfg, db, _, code, ok := e.issuerStore(path)
	if !ok {
		return nil, nil, nil, store.User{}, code, false
	}
	u, err := db.GetUserByName(e.ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		db.Close()
		fmt.Fprintf(e.stderr, "portcullis %s: no user %q\n", cmd, username)
		return nil, nil, nil, store.User{}, ExitUsage, false
	case err != nil:
		db.Close()
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return nil, nil, nil, store.User{}, ExitFailure, false
	}
	return cfg, db, func() { db.Close() }, u, 0, true
}

func (e env) usersSetDisabled(verb string, args []string) int {
	disable := verb == "disable"
	desc := "Stops a user from signing in. Their sessions end at their next use and their clients'\n" +
		"refresh tokens stop working (access tokens expire within issuer.tokens.access_ttl);\n" +
		"enabling the user again does not bring them back."
	if !disable {
		desc = "Lets a disabled user sign in again."
	}
	fs := e.flags("users "+verb, "--username NAME", desc)
	path := fs.String("config", "portcullis.yaml", "config file")
	username := fs.String("username", "", "the user (required)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	_, db, closeDB, u, code, ok := e.userByName("users "+verb, *path, *username)
	if !ok {
		return code
	}
	defer closeDB()
	if _, err := db.UpdateUser(e.ctx, u.ID, func(u store.User) (store.User, error) {
		now := time.Now().UTC()
		u.Disabled = disable
		u.UpdatedAt = now
		if disable { // ends every sign-in so far, also once the user is enabled again
			u.CredentialsChangedAt = now
		}
		return u, nil
	}); err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(e.stdout, "user %s %sd\n", u.Username, verb)
	return ExitOK
}

func (e env) usersSetPassword(args []string) int {
	fs := e.flags("users set-password", "--username NAME < password",
		"Replaces a user's password with the first line of stdin (at least 8 characters).\n"+
			"Every earlier sign-in ends: its sessions at their next use, its clients' refresh tokens\n"+
			"at their next refresh (access tokens expire within issuer.tokens.access_ttl).")
	path := fs.String("config", "portcullis.yaml", "config file")
	username := fs.String("username", "", "the user (required)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	password, ok := e.readPassword("users set-password")
	if !ok {
		return ExitUsage
	}
	_, db, closeDB, u, code, ok := e.userByName("users set-password", *path, *username)
	if !ok {
		return code
	}
	defer closeDB()
	hash, err := login.HashPassword(password)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis users set-password: %v\n", err)
		return ExitUsage
	}
	if _, err := db.UpdateUser(e.ctx, u.ID, func(u store.User) (store.User, error) {
		now := time.Now().UTC()
		u.PasswordHash = hash
		u.UpdatedAt, u.CredentialsChangedAt = now, now // ends the sessions and refresh tokens of earlier sign-ins
		return u, nil
	}); err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(e.stdout, "password of %s replaced\n", u.Username)
	return ExitOK
}

func (e env) usersList(args []string) int {
	fs := e.flags("users list", "[--config FILE]", "Lists the users: username, id (the sub of their tokens), state, second factor and attributes.")
	path := fs.String("config", "portcullis.yaml", "config file")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	_, db, _, code, ok := e.issuerStore(*path)
	if !ok {
		return code
	}
	defer db.Close()
	us, err := db.ListUsers(e.ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	sort.Slice(us, func(i, j int) bool { return us[i].Username < us[j].Username })
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tSTATE\tTOTP\tATTRIBUTES")
	for _, u := range us {
		state, totp := "active", "no"
		if u.Disabled {
			state = "disabled"
		}
		if u.TOTPSealed != nil {
			totp = "yes"
		}
		names := make([]string, 0, len(u.Attributes))
		for k := range u.Attributes {
			names = append(names, k)
		}
		slices.Sort(names)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Username, u.ID, state, totp, strings.Join(names, ","))
	}
	_ = tw.Flush()
	return ExitOK
}

func (e env) usersRevokeConsent(args []string) int {
	fs := e.flags("users revoke-consent", "--username NAME --client ID",
		"Forgets what the user allowed the client: the consent page shows again at the next\n"+
			"sign-in, and the client's refresh tokens for this user stop working at their next use\n"+
			"(their whole token family is revoked then; access tokens expire within access_ttl).")
	path := fs.String("config", "portcullis.yaml", "config file")
	username := fs.String("username", "", "the user (required)")
	client := fs.String("client", "", "the client id (required)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if *client == "" {
		fmt.Fprintln(e.stderr, "portcullis users revoke-consent: --client is required")
		return ExitUsage
	}
	_, db, closeDB, u, code, ok := e.userByName("users revoke-consent", *path, *username)
	if !ok {
		return code
	}
	defer closeDB()
	if _, err := db.GetConsent(e.ctx, u.ID, *client); errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(e.stdout, "%s has no consent for %s\n", u.Username, *client)
		return ExitOK
	}
	if err := db.DeleteConsent(e.ctx, u.ID, *client); err != nil && !errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(e.stderr, "portcullis: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(e.stdout, "consent of %s for %s revoked\n", u.Username, *client)
	return ExitOK
}
