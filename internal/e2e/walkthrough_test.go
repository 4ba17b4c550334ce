package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// commandLines returns the walkthrough's shell commands: the lines that start with curl or
// with a variable assignment.
func commandLines(walkthrough string) []string {
	var out []string
	for _, l := range strings.Split(walkthrough, "\n") {
		if strings.HasPrefix(l, "curl ") || regexp.MustCompile(`^[A-Z_]+=`).MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// step is what one walkthrough command must show. match selects the command by its text;
// check judges what it printed (as curl prints it: the body, then any -w output).
type step struct {
	name  string
	match func(cmd string) bool
	check func(t *testing.T, d *demo, vars map[string]string, out string)
}

func contains(subs ...string) func(string) bool {
	return func(cmd string) bool {
		for _, s := range subs {
			if !strings.Contains(cmd, s) {
				return false
			}
		}
		return true
	}
}

func jsonOut(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil {
		t.Fatalf("output is not a JSON object (%v): %q", err, out)
	}
	return m
}

func wantProblem(status int) func(t *testing.T, d *demo, vars map[string]string, out string) {
	return func(t *testing.T, _ *demo, _ map[string]string, out string) {
		if got := jsonOut(t, out)["status"]; got != float64(status) {
			t.Errorf("status %v, want a %d problem: %s", got, status, out)
		}
	}
}

// walkthroughSteps are the promises the printed walkthrough makes, in its order.
var walkthroughSteps = []step{
	{"phantom token: the API sees verified claims, never the opaque token", contains("/api/whoami"),
		func(t *testing.T, d *demo, _ map[string]string, out string) {
			m := jsonOut(t, out)
			claims, _ := m["claims"].(map[string]any)
			if claims["client_id"] != "acme-app" || claims["customer_id"] != "acme" || claims["iss"] != d.info.Issuer {
				t.Errorf("claims the API received: %v", claims)
			}
			if strings.Contains(out, "pcat_") {
				t.Error("the opaque token reached the API")
			}
			if strings.Contains(out, "6.6.6.6") || strings.Contains(strings.ToLower(out), `"x-user-id":["admin"]`) {
				t.Errorf("spoofed headers reached the API: %s", out)
			}
		}},
	{"tokens for the next steps", contains("ACME=", "GLOBEX=", "REPORTS="),
		func(t *testing.T, _ *demo, vars map[string]string, _ string) {
			if !strings.HasPrefix(vars["ACME"], "pcat_") || !strings.HasPrefix(vars["GLOBEX"], "pcat_") {
				t.Errorf("opaque tokens: ACME %.10q GLOBEX %.10q", vars["ACME"], vars["GLOBEX"])
			}
			if strings.Count(vars["REPORTS"], ".") != 2 {
				t.Errorf("REPORTS is not a JWT: %.20q", vars["REPORTS"])
			}
		}},
	{"acme lists only its own orders", func(c string) bool {
		return contains(`$ACME"`, "/api/orders")(c) && !strings.Contains(c, " -d ")
	}, func(t *testing.T, _ *demo, _ map[string]string, out string) {
		orders, _ := jsonOut(t, out)["orders"].([]any)
		if len(orders) == 0 {
			t.Fatalf("no orders: %s", out)
		}
		for _, o := range orders {
			if o.(map[string]any)["customer"] != "acme" {
				t.Errorf("acme sees %v", o)
			}
		}
	}},
	{"globex cannot read acme's order (404)", contains(`$GLOBEX"`, "/api/orders/A-1001"), wantProblem(404)},
	{"globex cannot create an order (403)", contains(`$GLOBEX"`, " -d ", "/api/orders"), wantProblem(403)},
	{"acme creates an order", contains(`$ACME"`, " -d ", "/api/orders"),
		func(t *testing.T, _ *demo, _ map[string]string, out string) {
			if m := jsonOut(t, out); m["customer"] != "acme" || m["id"] == nil {
				t.Errorf("created: %s", out)
			}
		}},
	{"the internal JWT reads reports", contains(`$REPORTS"`, "/internal/reports"),
		func(t *testing.T, _ *demo, _ map[string]string, out string) {
			if m := jsonOut(t, out); m["status"] != nil || m["orders_total"] == nil {
				t.Errorf("reports: %s", out)
			}
		}},
	{"an opaque token is refused on the JWT route (401)", contains(`$ACME"`, "/internal/reports"), wantProblem(401)},
	{"revoked: the gateway refuses the token at once (401)", contains("/revoke"),
		func(t *testing.T, _ *demo, _ map[string]string, out string) {
			if strings.TrimSpace(out) != "401" {
				t.Errorf("after revocation the gateway answered %q, want 401", out)
			}
		}},
}

// followWalkthrough runs each printed command with run and checks it against the steps.
func followWalkthrough(t *testing.T, d *demo, run func(cmd string) (string, error), vars map[string]string) {
	cmds := commandLines(d.stdout.String())
	if len(cmds) != len(walkthroughSteps) {
		t.Fatalf("the walkthrough has %d commands; this test knows %d steps:\n%s", len(cmds), len(walkthroughSteps), strings.Join(cmds, "\n"))
	}
	for i, cmd := range cmds {
		st := walkthroughSteps[i]
		if !st.match(cmd) {
			t.Fatalf("command %d is not %q:\n%s", i+1, st.name, cmd)
		}
		t.Run(fmt.Sprintf("%d %s", i+1, st.name), func(t *testing.T) {
			out, err := run(cmd)
			if err != nil {
				t.Fatalf("%v\n%s", err, cmd)
			}
			st.check(t, d, vars, out)
		})
	}
}

// TestDemoWalkthrough follows the printed walkthrough through the real binary, executing each
// curl command with net/http (a small interpreter for the shell the walkthrough uses).
func TestDemoWalkthrough(t *testing.T) {
	d := startDemo(t, t.TempDir())
	sh := &shell{vars: map[string]string{}, http: d.http}
	followWalkthrough(t, d, sh.run, sh.vars)
}

// TestDemoWalkthroughCurl runs the printed commands as printed, with bash and curl.
func TestDemoWalkthroughCurl(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the walkthrough is followed with net/http only (TestDemoWalkthrough)", tool)
		}
	}
	d := startDemo(t, t.TempDir())
	cmds := commandLines(d.stdout.String())
	// One bash runs every command, so variables carry over; a marker after each command
	// separates their outputs.
	var script strings.Builder
	script.WriteString("set -u\n")
	for i, c := range cmds {
		fmt.Fprintf(&script, "%s\nprintf '\\n<<<end %d>>>\\n'\n", c, i)
	}
	script.WriteString(`printf '%s\n%s\n%s\n' "$ACME" "$GLOBEX" "$REPORTS"` + "\n")
	cmd := exec.CommandContext(t.Context(), "bash", "-c", script.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, stderr.String())
	}
	parts := regexp.MustCompile(`\n<<<end \d+>>>\n`).Split(string(out), -1)
	if len(parts) != len(cmds)+1 {
		t.Fatalf("%d outputs for %d commands", len(parts)-1, len(cmds))
	}
	last := strings.Split(strings.TrimSpace(parts[len(cmds)]), "\n")
	vars := map[string]string{}
	if len(last) == 3 {
		vars["ACME"], vars["GLOBEX"], vars["REPORTS"] = last[0], last[1], last[2]
	}
	i := 0
	followWalkthrough(t, d, func(string) (string, error) { o := parts[i]; i++; return o, nil }, vars)
}

// shell interprets the subset of POSIX shell the walkthrough uses: variable assignments,
// "$VAR" expansion, $(...) substitution, ';' and '&&' lists, a pipe into `sed -E 's/re/r/'`,
// and curl with -s, --cacert, -u, -d, -H, -o /dev/null and -w '%{http_code}\n'.
type shell struct {
	vars map[string]string
	http *http.Client
}

// run executes one command line and returns what it printed.
func (s *shell) run(line string) (string, error) {
	words, err := s.split(line)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	var cmd []string
	flush := func() error {
		if len(cmd) == 0 {
			return nil
		}
		o, err := s.pipeline(cmd)
		out.WriteString(o)
		cmd = nil
		return err
	}
	for _, w := range words {
		if w == ";" || w == "&&" {
			if err := flush(); err != nil {
				return out.String(), err
			}
			continue
		}
		cmd = append(cmd, w)
	}
	err = flush()
	return out.String(), err
}

// pipeline runs words split at "|".
func (s *shell) pipeline(words []string) (string, error) {
	var input string
	var stage []string
	flush := func(first bool) error {
		var err error
		input, err = s.command(stage, input, first)
		stage = nil
		return err
	}
	first := true
	for _, w := range words {
		if w == "|" {
			if err := flush(first); err != nil {
				return "", err
			}
			first = false
			continue
		}
		stage = append(stage, w)
	}
	err := flush(first)
	return input, err
}

func (s *shell) command(args []string, input string, first bool) (string, error) {
	// Leading NAME=value words are assignments.
	for len(args) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(args[0]) {
		name, value, _ := strings.Cut(args[0], "=")
		s.vars[name] = value
		args = args[1:]
	}
	if len(args) == 0 {
		return "", nil
	}
	switch args[0] {
	case "curl":
		return s.curl(args[1:])
	case "sed":
		return sed(args[1:], input)
	case "echo":
		return strings.Join(args[1:], " ") + "\n", nil
	}
	return "", fmt.Errorf("the interpreter does not know %q", args[0])
}

func sed(args []string, input string) (string, error) {
	if len(args) != 2 || args[0] != "-E" || !strings.HasPrefix(args[1], "s/") {
		return "", fmt.Errorf("unsupported sed %q", args)
	}
	parts := strings.Split(args[1], "/")
	if len(parts) != 4 {
		return "", fmt.Errorf("unsupported sed expression %q", args[1])
	}
	re, err := regexp.Compile(parts[1])
	if err != nil {
		return "", err
	}
	repl := regexp.MustCompile(`\\(\d)`).ReplaceAllString(parts[2], "$${$1}")
	var out []string
	for _, l := range strings.SplitAfter(input, "\n") {
		if l == "" {
			continue
		}
		nl := strings.HasSuffix(l, "\n")
		l = strings.TrimSuffix(l, "\n")
		if loc := re.FindStringSubmatchIndex(l); loc != nil {
			l = l[:loc[0]] + string(re.ExpandString(nil, repl, l, loc)) + l[loc[1]:]
		}
		if nl {
			l += "\n"
		}
		out = append(out, l)
	}
	if len(out) > 0 && !strings.HasSuffix(out[len(out)-1], "\n") {
		out[len(out)-1] += "\n" // sed ends its last line
	}
	return strings.Join(out, ""), nil
}

func (s *shell) curl(args []string) (string, error) {
	var method, target, user, writeOut string
	var data []string
	headers := http.Header{}
	discardBody := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("curl %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var v string
		var err error
		switch a {
		case "-s", "-S", "--silent":
			continue
		case "--cacert", "-u", "-d", "--data", "-H", "-o", "-w", "-X":
			if v, err = next(); err != nil {
				return "", err
			}
		default:
			if strings.HasPrefix(a, "-") {
				return "", fmt.Errorf("unsupported curl flag %q", a)
			}
			target = a
			continue
		}
		switch a {
		case "--cacert": // the shell's client already trusts exactly the demo CA
		case "-u":
			user = v
		case "-d", "--data":
			data = append(data, v)
		case "-H":
			k, hv, ok := strings.Cut(v, ":")
			if !ok {
				return "", fmt.Errorf("bad header %q", v)
			}
			headers.Set(strings.TrimSpace(k), strings.TrimSpace(hv))
		case "-o":
			if v != "/dev/null" {
				return "", fmt.Errorf("curl -o %s: only /dev/null", v)
			}
			discardBody = true
		case "-w":
			writeOut = v
		case "-X":
			method = v
		}
	}
	if target == "" {
		return "", errors.New("curl without a URL")
	}
	var body io.Reader
	if data != nil {
		body = strings.NewReader(strings.Join(data, "&"))
		if method == "" {
			method = http.MethodPost
		}
		if headers.Get("Content-Type") == "" {
			headers.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		return "", err
	}
	req.Header = headers
	req.Header.Set("User-Agent", "curl/8")
	req.Header.Set("Accept", "*/*")
	if user != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user)))
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	if !discardBody {
		out.Write(b)
	}
	w := strings.ReplaceAll(writeOut, "%{http_code}", fmt.Sprintf("%03d", resp.StatusCode))
	out.WriteString(strings.ReplaceAll(w, `\n`, "\n"))
	return out.String(), nil
}

// split turns a command line into words and operators, removing quotes and expanding
// $VAR, ${VAR} and $(...) as the shell would.
func (s *shell) split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	emit := func() {
		if inWord {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			emit()
		case c == ';' || c == '|':
			emit()
			words = append(words, string(c))
		case c == '&' && i+1 < len(line) && line[i+1] == '&':
			emit()
			words = append(words, "&&")
			i++
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated '")
			}
			cur.WriteString(line[i+1 : i+1+end])
			inWord = true
			i += 1 + end
		case c == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' && j+1 < len(line) {
					j++
					cur.WriteByte(line[j])
					continue
				}
				if line[j] == '$' {
					n, err := s.expand(line[j:], &cur)
					if err != nil {
						return nil, err
					}
					j += n - 1
					continue
				}
				cur.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, errors.New(`unterminated "`)
			}
			inWord = true
			i = j
		case c == '$':
			n, err := s.expand(line[i:], &cur)
			if err != nil {
				return nil, err
			}
			inWord = true
			i += n - 1
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	emit()
	return words, nil
}

// expand expands the $ construct at the start of s into out and returns its length.
func (s *shell) expand(str string, out *strings.Builder) (int, error) {
	if strings.HasPrefix(str, "$(") {
		depth, inSingle, inDouble := 0, false, false
		for j := 1; j < len(str); j++ {
			switch c := str[j]; {
			case c == '\'' && !inDouble:
				inSingle = !inSingle
			case c == '"' && !inSingle:
				inDouble = !inDouble
			case inSingle || inDouble:
			case c == '(':
				depth++
			case c == ')':
				depth--
				if depth == 0 {
					o, err := s.run(str[2:j])
					if err != nil {
						return 0, err
					}
					out.WriteString(strings.TrimRight(o, "\n"))
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("unterminated $(")
	}
	if strings.HasPrefix(str, "${") {
		end := strings.IndexByte(str, '}')
		if end < 0 {
			return 0, errors.New("unterminated ${")
		}
		out.WriteString(s.lookup(str[2:end]))
		return end + 1, nil
	}
	m := regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)`).FindStringSubmatch(str)
	if m == nil {
		out.WriteByte('$')
		return 1, nil
	}
	out.WriteString(s.lookup(m[1]))
	return len(m[0]), nil
}

func (s *shell) lookup(name string) string {
	if v, ok := s.vars[name]; ok {
		return v
	}
	return os.Getenv(name)
}
