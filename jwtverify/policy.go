package jwtverify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// Policy limits.
const (
	// PolicyCostLimit is the runtime cost budget of one evaluation (CEL cost units, roughly one
	// per operation or element visited). Exceeding it is an evaluation error, hence a deny.
	PolicyCostLimit = 100_000
	// MaxPolicyLength caps the length of an expression.
	MaxPolicyLength = 4096
)

// Policy is a compiled CEL expression deciding whether a request may proceed. It is safe for
// concurrent use.
//
// Variables:
//
//	claims    map(string, dyn)  the token's claims (Claims.Raw: JSON numbers become int when
//	                            integral, else double)
//	request   .method, .path string; .params, .headers map(string, string) (RequestInput)
//	resource  map(string, dyn)  attributes the API supplies (e.g. an order's owner)
//
// The standard CEL library and the strings extension (split, lowerAscii, …) are available.
// Example: `"orders:read" in claims.scope.split(" ") && resource.customer == claims.customer_id`.
type Policy struct {
	expr string
	prg  cel.Program
}

// PolicyInput is what a policy sees. A nil Claims or Resource is an empty map.
type PolicyInput struct {
	Claims   *Claims
	Request  RequestInput
	Resource map[string]any
}

// RequestInput describes the request to a policy. Headers have lower-case names; multiple values
// are joined with ", ".
type RequestInput struct {
	Method  string            `cel:"method"`
	Path    string            `cel:"path"`
	Params  map[string]string `cel:"params"`
	Headers map[string]string `cel:"headers"`
}

var policyEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.CustomTypeAdapter(jsonAdapter{types.DefaultTypeAdapter}),
		ext.NativeTypes(reflect.TypeFor[RequestInput](), types.ParseStructTags(true)),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.ObjectType("jwtverify.RequestInput")),
		cel.Variable("resource", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxPolicyLength),
	)
})

// CompilePolicy parses and type-checks expr. The expression must have type bool; a runtime cost
// limit (PolicyCostLimit) is always set. Compile policies once, when configuration loads.
func CompilePolicy(expr string) (*Policy, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("jwtverify: policy: empty expression")
	}
	if len(expr) > MaxPolicyLength {
		return nil, fmt.Errorf("jwtverify: policy: expression longer than %d bytes", MaxPolicyLength)
	}
	env, err := policyEnv()
	if err != nil {
		return nil, fmt.Errorf("jwtverify: policy environment: %w", err)
	}
	ast, issues := env.Compile(expr)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("jwtverify: policy: %w", issues.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("jwtverify: policy: expression has type %s, want bool", ast.OutputType())
	}
	prg, err := env.Program(ast,
		cel.CostLimit(PolicyCostLimit),
		cel.InterruptCheckFrequency(100),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Errorf("jwtverify: policy: %w", err)
	}
	return &Policy{expr: expr, prg: prg}, nil
}

// String returns the source expression.
func (p *Policy) String() string { return p.expr }

// Allow evaluates the policy. An evaluation error (missing key, cost limit, cancelled ctx, …)
// returns false with the error: deny.
func (p *Policy) Allow(ctx context.Context, in PolicyInput) (bool, error) {
	vars := policyVars{request: &in.Request, resource: in.Resource}
	if in.Claims != nil {
		vars.claims = in.Claims.Raw
	}
	out, _, err := p.prg.ContextEval(ctx, &vars)
	if err != nil {
		return false, fmt.Errorf("jwtverify: policy %q: %w", quoteShort(p.expr), err)
	}
	allowed, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("jwtverify: policy %q: result %T is not a bool", quoteShort(p.expr), out.Value())
	}
	return allowed, nil
}

// PolicySet is a list of policies combined by "any allows". Deny by default: an empty set, or a
// set where no policy evaluates to true, denies.
type PolicySet []*Policy

// Allow reports whether some policy allows in. When none does, the evaluation errors met (if
// any) are returned joined, for logging.
func (s PolicySet) Allow(ctx context.Context, in PolicyInput) (bool, error) {
	var errs []error
	for _, p := range s {
		if p == nil {
			continue
		}
		ok, err := p.Allow(ctx, in)
		if ok {
			return true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, errors.Join(errs...)
}

// RequestInputFrom describes r for a policy. Params holds the path values named by paramNames,
// or, when none are given, every wildcard of the ServeMux pattern that matched r (r.Pattern).
// Credentials never reach policies: the Authorization, Proxy-Authorization and Cookie headers
// are left out. Path is r.URL.Path (decoded).
func RequestInputFrom(r *http.Request, paramNames ...string) RequestInput {
	in := RequestInput{
		Method:  r.Method,
		Path:    r.URL.Path,
		Params:  map[string]string{},
		Headers: make(map[string]string, len(r.Header)),
	}
	if len(paramNames) == 0 {
		paramNames = patternWildcards(r.Pattern)
	}
	for _, name := range paramNames {
		if v := r.PathValue(name); v != "" {
			in.Params[name] = v
		}
	}
	for name, values := range r.Header {
		lower := strings.ToLower(name)
		switch lower {
		case "authorization", "proxy-authorization", "cookie":
			continue
		}
		in.Headers[lower] = strings.Join(values, ", ")
	}
	return in
}

// patternWildcards returns the wildcard names of a ServeMux pattern ("GET /a/{id}/{rest...}").
func patternWildcards(pattern string) []string {
	var names []string
	for {
		open := strings.IndexByte(pattern, '{')
		if open < 0 {
			return names
		}
		end := strings.IndexByte(pattern[open:], '}')
		if end < 0 {
			return names
		}
		name := strings.TrimSuffix(pattern[open+1:open+end], "...")
		if name != "" && name != "$" {
			names = append(names, name)
		}
		pattern = pattern[open+end+1:]
	}
}

// policyVars is the activation of one evaluation (no map allocated per call).
type policyVars struct {
	claims   map[string]any
	request  *RequestInput
	resource map[string]any
}

func (a *policyVars) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		if a.claims == nil {
			return map[string]any{}, true
		}
		return a.claims, true
	case "request":
		return a.request, true
	case "resource":
		if a.resource == nil {
			return map[string]any{}, true
		}
		return a.resource, true
	}
	return nil, false
}

func (a *policyVars) Parent() interpreter.Activation { return nil }

// jsonAdapter converts the values encoding/json produces with UseNumber: json.Number becomes int
// when integral, else double; nested objects and arrays keep converting through it.
type jsonAdapter struct{ base types.Adapter }

func (a jsonAdapter) NativeToValue(value any) ref.Val {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return types.Int(i)
		}
		if f, err := v.Float64(); err == nil {
			return types.Double(f)
		}
		return types.String(v)
	case map[string]any:
		return types.NewStringInterfaceMap(a, v)
	case []any:
		return types.NewDynamicList(a, v)
	}
	return a.base.NativeToValue(value)
}
