package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds the file we are willing to parse.
const maxConfigBytes = 1 << 20

// decode turns YAML bytes into c. Problems found while walking the document (unknown keys,
// unset variables) are returned together with a c that is still fully decoded, so the caller
// can validate it too and report everything at once. It expands ${ENV} references inside scalar values only (so
// an environment value can never change the document's structure), refuses unknown keys, and
// records the line of every path so validation problems can point at the file.
func decode(data []byte, lookup func(string) (string, bool), c *Config) (lines map[string]int, err error) {
	if len(data) > maxConfigBytes {
		return nil, Problems{{Message: fmt.Sprintf("config file is larger than %d bytes", maxConfigBytes)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{{Message: cleanYAMLError(err)}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]int{}, nil // empty file: all defaults
	}
	root := doc.Content[0]
	w := walker{lookup: lookup, lines: map[string]int{}}
	w.walk(root, reflect.TypeOf(c).Elem(), "")
	if err := root.Decode(c); err != nil {
		return w.lines, append(w.problems, Problem{Message: cleanYAMLError(err)})
	}
	if len(w.problems) > 0 {
		return w.lines, w.problems
	}
	return w.lines, nil
}

// cleanYAMLError removes the library's prefix so messages read "line 4: cannot unmarshal ...".
func cleanYAMLError(err error) string {
	if te, ok := err.(*yaml.TypeError); ok {
		return strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

type walker struct {
	lookup   func(string) (string, bool)
	lines    map[string]int
	problems Problems
}

func (w *walker) problem(n *yaml.Node, path, format string, args ...any) {
	w.problems = append(w.problems, Problem{Path: path, Line: n.Line, Message: fmt.Sprintf(format, args...)})
}

// walk checks node n against Go type t: mapping keys must be known yaml fields of structs;
// scalar values get their ${ENV} references expanded in place.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	w.lines[path] = n.Line
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.AliasNode:
		w.problem(n, path, "YAML aliases are not supported in the config")
		return
	case yaml.ScalarNode:
		w.expand(n, path)
		return
	}
	if reflect.PointerTo(t).Implements(oneOrListType) {
		// One element or a list of them: walk each element at path[i].
		switch n.Kind {
		case yaml.MappingNode:
			w.walk(n, t.Elem(), path+"[0]")
		case yaml.SequenceNode:
			for i, v := range n.Content {
				w.walk(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		default:
			w.problem(n, path, "must be a mapping or a list of mappings")
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // the type decodes itself (for example an inline JWKS)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.problem(n, path, "must be a mapping")
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				w.problem(k, p, "duplicate key")
				continue
			}
			seen[k.Value] = true
			ft, ok := fields[k.Value]
			if !ok {
				w.problem(k, p, "unknown key %q", k.Value)
				continue
			}
			w.walk(v, ft, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.problem(n, path, "must be a mapping")
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				w.problem(k, p, "duplicate key")
				continue
			}
			seen[k.Value] = true
			w.walk(v, t.Elem(), p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.problem(n, path, "must be a list")
			return
		}
		for i, v := range n.Content {
			w.walk(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		w.problem(n, path, "must be a single value")
	}
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	oneOrListType   = reflect.TypeOf((*oneOrList)(nil)).Elem()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the yaml names of t's fields to their types, following inline structs.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// expand replaces ${NAME} and ${NAME:-default} in a scalar value. An unset variable without a
// default is a problem, not an empty string: a missing secret must not silently become "".
// "$$" stands for a literal "$".
func (w *walker) expand(n *yaml.Node, path string) {
	v := n.Value
	if !strings.Contains(v, "$") {
		return
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(v) && v[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(v) || v[i+1] != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(v[i+2:], '}')
		if end < 0 {
			w.problem(n, path, "unterminated ${ in value")
			return
		}
		ref := v[i+2 : i+2+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			w.problem(n, path, "invalid environment variable name %s", strconv.Quote(name))
			return
		}
		val, ok := w.lookup(name)
		switch {
		case ok && val != "":
		case hasDef:
			val = def
		case !ok:
			w.problem(n, path, "environment variable %s is not set", name)
			return
		}
		b.WriteString(val)
		i += 2 + end
	}
	n.Value = b.String()
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		n.Tag = "" // resolve the expanded text afresh, so "${PORT}" can fill an int
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// osLookup is the real environment.
func osLookup(name string) (string, bool) { return os.LookupEnv(name) }
