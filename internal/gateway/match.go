package gateway

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The methods a route may serve, as bits. TRACE and CONNECT are never proxied.
const (
	mGET uint8 = 1 << iota
	mHEAD
	mPOST
	mPUT
	mPATCH
	mDELETE
	mOPTIONS
	numMethods = 7
	allMethods = 1<<numMethods - 1
)

var methodNames = [numMethods]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// methodIndex returns the bit index of a method, or -1.
func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	case "OPTIONS":
		return 6
	}
	return -1
}

type segKind uint8

const (
	segLiteral segKind = iota
	segParam           // {name}: one non-empty segment
	segRest            // {name...} or the tail of a prefix: whatever remains
)

type seg struct {
	kind segKind
	lit  string // segLiteral
	name string // segParam, segRest
}

// pathSpec is a compiled path_prefix or path pattern.
type pathSpec struct {
	source string // as configured
	prefix bool   // path_prefix: the path itself or anything below it
	segs   []seg  // pattern segments; for a prefix, its literal segments
}

// compilePath compiles a path_prefix (prefix == true) or a pattern.
func compilePath(p string, prefix bool) (pathSpec, error) {
	spec := pathSpec{source: p, prefix: prefix}
	if p == "" || p[0] != '/' {
		return spec, fmt.Errorf("path %q must start with /", p)
	}
	if prefix {
		if p != "/" && strings.HasSuffix(p, "/") {
			return spec, fmt.Errorf("path_prefix %q must not end with /", p)
		}
		if clean, err := NormalizePath(p); err != nil || clean != p || strings.Contains(p, "%") {
			return spec, fmt.Errorf("path_prefix %q is not a clean path", p)
		}
		if p != "/" {
			for _, s := range strings.Split(p[1:], "/") {
				spec.segs = append(spec.segs, seg{kind: segLiteral, lit: s})
			}
		}
		return spec, nil
	}
	parts := strings.Split(p[1:], "/")
	names := map[string]bool{}
	for i, s := range parts {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			name := s[1 : len(s)-1]
			kind := segParam
			if strings.HasSuffix(name, "...") {
				if i != len(parts)-1 {
					return spec, fmt.Errorf("path %q: {name...} must be the last segment", p)
				}
				name, kind = strings.TrimSuffix(name, "..."), segRest
			}
			if name == "" || names[name] || strings.ContainsAny(name, "{}./") {
				return spec, fmt.Errorf("path %q: bad or repeated parameter name %q", p, name)
			}
			names[name] = true
			spec.segs = append(spec.segs, seg{kind: kind, name: name})
			continue
		}
		if strings.ContainsAny(s, "{}%") || (s == "" && i != len(parts)-1) || s == "." || s == ".." {
			return spec, fmt.Errorf("path %q: bad segment %q", p, s)
		}
		for j := 0; j < len(s); j++ {
			if !rawPathByte(s[j]) {
				return spec, fmt.Errorf("path %q: character %q not allowed", p, s[j])
			}
		}
		spec.segs = append(spec.segs, seg{kind: segLiteral, lit: s})
	}
	return spec, nil
}

// match reports whether the decoded, normalised path matches the spec.
func (p *pathSpec) match(path string) bool {
	if p.prefix {
		src := p.source
		if src == "/" {
			return true
		}
		return strings.HasPrefix(path, src) && (len(path) == len(src) || path[len(src)] == '/')
	}
	rest := path[1:] // path starts with '/'
	done := false    // no segment left
	for _, s := range p.segs {
		if s.kind == segRest {
			return !done
		}
		if done {
			return false
		}
		var cur string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			cur, rest = rest[:i], rest[i+1:]
		} else {
			cur, rest, done = rest, "", true
		}
		switch s.kind {
		case segLiteral:
			if cur != s.lit {
				return false
			}
		case segParam:
			if cur == "" {
				return false
			}
		}
	}
	return done
}

// params returns the values of the pattern's parameters in path (which must match).
func (p *pathSpec) params(path string) map[string]string {
	out := map[string]string{}
	if p.prefix {
		return out
	}
	rest := path[1:]
	for _, s := range p.segs {
		if s.kind == segRest {
			out[s.name] = rest
			return out
		}
		cur := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			cur, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if s.kind == segParam {
			out[s.name] = cur
		}
	}
	return out
}

// param returns the value of the pattern parameter name in path (which must match), or "".
// Unlike params it allocates nothing.
func (p *pathSpec) param(path, name string) string {
	if p.prefix {
		return ""
	}
	rest := path[1:]
	for _, s := range p.segs {
		if s.kind == segRest {
			if s.name == name {
				return rest
			}
			return ""
		}
		cur := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			cur, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if s.kind == segParam && s.name == name {
			return cur
		}
	}
	return ""
}

// key names the set of paths the spec selects, parameter names erased.
func (p *pathSpec) key() string {
	var b strings.Builder
	if p.prefix {
		b.WriteString("prefix:")
	}
	for _, s := range p.segs {
		b.WriteByte('/')
		switch s.kind {
		case segLiteral:
			b.WriteString(s.lit)
		case segParam:
			b.WriteString("{}")
		case segRest:
			b.WriteString("{...}")
		}
	}
	return b.String()
}

// hostSpec is a compiled match.host.
type hostSpec struct {
	name     string // lower case; for a wildcard, the suffix after "*"  (".example.com")
	wildcard bool
}

func (h hostSpec) rank() int {
	switch {
	case h.name == "":
		return 0
	case h.wildcard:
		return 1
	}
	return 2
}

// match reports whether the request host (port already removed) matches.
func (h hostSpec) match(host string) bool {
	switch {
	case h.name == "":
		return true
	case h.wildcard:
		if len(host) <= len(h.name) || !strings.EqualFold(host[len(host)-len(h.name):], h.name) {
			return false
		}
		return strings.IndexByte(host[:len(host)-len(h.name)], '.') < 0
	}
	return strings.EqualFold(host, h.name)
}

// hostOnly removes the port from a Host header value.
func hostOnly(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}

// group is the routes selecting the same host and paths; each method belongs to at most one.
type group struct {
	host     hostSpec
	path     pathSpec
	byMethod [numMethods]*route
	allow    string // the Allow header: methods some route of the group serves
	cors     bool   // some route of the group configures CORS
}

// table is the compiled, immutable routing table of one configuration.
type table struct {
	groups []*group // most specific first
}

// newTable groups and orders routes. Two routes selecting the same requests are a config
// error (config validation reports it too).
func newTable(routes []*route) (*table, error) {
	byKey := map[string]*group{}
	var groups []*group
	for _, r := range routes {
		k := r.host.name + fmt.Sprint(r.host.wildcard) + " " + r.path.key()
		g := byKey[k]
		if g == nil {
			g = &group{host: r.host, path: r.path}
			byKey[k] = g
			groups = append(groups, g)
		}
		for i := range numMethods {
			if r.methods&(1<<i) == 0 {
				continue
			}
			if other := g.byMethod[i]; other != nil {
				return nil, fmt.Errorf("routes %q and %q both match %s %s", other.name, r.name, methodNames[i], r.path.source)
			}
			g.byMethod[i] = r
		}
	}
	for _, g := range groups {
		// GET implies HEAD unless some route claims HEAD for itself.
		if g.byMethod[1] == nil && g.byMethod[0] != nil {
			g.byMethod[1] = g.byMethod[0]
		}
		for _, r := range g.byMethod {
			if r != nil && r.cors != nil {
				g.cors = true
			}
		}
		var allow []string
		for i := range numMethods {
			if g.byMethod[i] != nil {
				allow = append(allow, methodNames[i])
			}
		}
		g.allow = strings.Join(allow, ", ")
	}
	slices.SortStableFunc(groups, func(a, b *group) int { return compareGroups(a, b) })
	return &table{groups: groups}, nil
}

// compareGroups orders by specificity: a host name before a wildcard before any host; then
// segment by segment a literal before a parameter before a rest; a pattern that ends before a
// prefix or rest that continues.
func compareGroups(a, b *group) int {
	if c := cmp.Compare(b.host.rank(), a.host.rank()); c != 0 {
		return c
	}
	as, bs := specSegs(&a.path), specSegs(&b.path)
	for i := 0; ; i++ {
		switch {
		case i == len(as) && i == len(bs):
			return strings.Compare(a.path.source, b.path.source)
		case i == len(as):
			return -1 // a ends here; b continues (a longer pattern or a tail): a is exact
		case i == len(bs):
			return 1
		}
		x, y := as[i], bs[i]
		if x.kind != y.kind {
			return cmp.Compare(x.kind, y.kind) // literal < param < rest: literal first
		}
		if x.kind == segLiteral && x.lit != y.lit {
			return strings.Compare(x.lit, y.lit)
		}
	}
}

// specSegs returns the segments with a prefix's implicit tail made explicit.
func specSegs(p *pathSpec) []seg {
	if !p.prefix {
		return p.segs
	}
	return append(slices.Clip(p.segs), seg{kind: segRest})
}

// lookup finds the group for host and path, or nil.
func (t *table) lookup(host, path string) *group {
	for _, g := range t.groups {
		if g.host.match(host) && g.path.match(path) {
			return g
		}
	}
	return nil
}

// route returns the group's route for method, or nil.
func (g *group) route(method string) *route {
	i := methodIndex(method)
	if i < 0 {
		return nil
	}
	return g.byMethod[i]
}
