package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/portcullis/portcullis"

// layer ranks packages: a package may import only packages of a strictly lower rank, except
// within "capabilities", where siblings may use each other.
var layers = []struct {
	name     string
	rank     int
	prefixes []string
}{
	{"cmd", 5, []string{"cmd"}},
	{"app", 4, []string{"internal/app"}},
	{"surface", 3, []string{"internal/issuer", "internal/gateway", "internal/tokenhandler", "internal/demoapi", "internal/demoweb", "internal/admin"}},
	{"capability", 2, []string{"internal/issuer/grant", "internal/token", "internal/keys", "internal/tokencheck", "internal/ratelimit", "internal/seal", "internal/secret", "internal/audit", "internal/abuse", "internal/login", "internal/store/sqlstore", "internal/events/redisbus"}},
	{"foundation", 1, []string{"internal/oauth", "internal/store", "internal/web", "internal/telemetry", "internal/config", "internal/events"}},
	{"jwtverify", 0, []string{"jwtverify"}},
}

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var ps []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 10 {
		t.Fatalf("go list found only %d packages", len(ps))
	}
	return ps
}

// classify returns the layer of an import path inside the module (longest prefix wins).
func classify(path string) (name string, rank int, ok bool) {
	rel := strings.TrimPrefix(path, module+"/")
	best := -1
	for _, l := range layers {
		for _, p := range l.prefixes {
			if (rel == p || strings.HasPrefix(rel, p+"/")) && len(p) > best {
				best, name, rank, ok = len(p), l.name, l.rank, true
			}
		}
	}
	return
}

func TestImportsPointDown(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.Contains(p.ImportPath, "/internal/archtest") || strings.Contains(p.ImportPath, "/storetest") || strings.Contains(p.ImportPath, "/bench") || strings.Contains(p.ImportPath, "/internal/e2e") {
			continue
		}
		from, fromRank, ok := classify(p.ImportPath)
		if !ok {
			t.Errorf("%s is in no layer: add it to layers in %s", p.ImportPath, "internal/archtest/layers_test.go")
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to, toRank, ok := classify(imp)
			if !ok {
				continue // reported for its own package
			}
			if from == "capability" && to == "capability" {
				continue
			}
			if toRank >= fromRank {
				t.Errorf("%s (%s) imports %s (%s): imports must point down", p.ImportPath, from, imp, to)
			}
		}
	}
}

func TestOnlyAppPicksAStoreBackend(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if strings.HasSuffix(imp, "/internal/store/sqlstore") && !strings.HasSuffix(p.ImportPath, "/internal/app") && !strings.Contains(p.ImportPath, "/bench") {
				t.Errorf("%s imports sqlstore: only internal/app picks a backend", p.ImportPath)
			}
		}
	}
}

func TestJWTVerifyImportsNothingOfOurs(t *testing.T) {
	for _, p := range listPackages(t) {
		if !strings.HasSuffix(p.ImportPath, "/jwtverify") {
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) {
				t.Errorf("jwtverify imports %s: it must stand alone", imp)
			}
		}
		return
	}
	t.Fatal("jwtverify not found")
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}
