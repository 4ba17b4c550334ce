package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong (or, for warnings, risky) in a config, located by its path in
// the document (gateway.routes[2].auth) and, when loaded from a file, its line.
type Problem struct {
	Path    string
	Line    int
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found at once. As an error it lists them one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// add records a problem at path.
func (ps *Problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// locate fills in lines from the decoder's map, using the nearest ancestor path that has
// one, and sorts by line so the output reads like the file.
func (ps Problems) locate(lines map[string]int) {
	for i := range ps {
		if ps[i].Line != 0 {
			continue
		}
		for p := ps[i].Path; p != ""; p = parent(p) {
			if l, ok := lines[p]; ok {
				ps[i].Line = l
				break
			}
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

// parent strips the last element of a path: a.b[2].c → a.b[2] → a.b → a.
func parent(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}
