package gateway

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/config"
)

// corsPolicy is a route's compiled CORS configuration. The gateway owns CORS: it answers
// preflights itself and drops whatever Access-Control-* headers an upstream sends.
type corsPolicy struct {
	anyOrigin   bool
	origins     []string
	credentials bool
	methods     uint8
	headers     []string // lower case
	allowMethod []string
	allowHdrs   []string
	expose      []string
	maxAge      []string
}

var (
	valTrue = []string{"true"}
	valVary = []string{"Origin"}
	valAny  = []string{"*"}
)

func newCORSPolicy(c *config.CORS, routeMethods uint8) (*corsPolicy, error) {
	p := &corsPolicy{credentials: c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		if !config.ValidOrigin(o) {
			return nil, errors.New("allow_origins: " + strconv.Quote(o) + " is not an origin")
		}
		p.origins = append(p.origins, o)
	}
	if len(c.AllowOrigins) == 0 {
		return nil, errors.New("allow_origins is required")
	}
	if p.anyOrigin && p.credentials {
		return nil, errors.New("a wildcard origin cannot allow credentials")
	}
	p.methods = routeMethods
	if len(c.AllowMethods) > 0 {
		p.methods = 0
		for _, m := range c.AllowMethods {
			i := methodIndex(m)
			if i < 0 {
				return nil, errors.New("allow_methods: unknown method " + strconv.Quote(m))
			}
			p.methods |= 1 << i
		}
		p.methods &= routeMethods
	}
	var names []string
	for i := range numMethods {
		if p.methods&(1<<i) != 0 {
			names = append(names, methodNames[i])
		}
	}
	p.allowMethod = []string{strings.Join(names, ", ")}
	hdrs := c.AllowHeaders
	if len(hdrs) == 0 {
		hdrs = []string{"Authorization", "Content-Type"}
	}
	for _, h := range hdrs {
		p.headers = append(p.headers, strings.ToLower(h))
	}
	p.allowHdrs = []string{strings.Join(hdrs, ", ")}
	if len(c.ExposeHeaders) > 0 {
		p.expose = []string{strings.Join(c.ExposeHeaders, ", ")}
	}
	if c.MaxAge > 0 {
		p.maxAge = []string{strconv.Itoa(int(c.MaxAge.Seconds()))}
	}
	return p, nil
}

// originAllowed reports whether origin may read responses.
func (p *corsPolicy) originAllowed(origin string) bool {
	return p.anyOrigin || slices.Contains(p.origins, origin)
}

// setAllowOrigin sets the Access-Control-Allow-Origin (and credentials) headers for origin.
func (p *corsPolicy) setAllowOrigin(h http.Header, origin string) {
	if p.anyOrigin {
		h["Access-Control-Allow-Origin"] = valAny
	} else {
		h["Access-Control-Allow-Origin"] = []string{origin}
	}
	if p.credentials {
		h["Access-Control-Allow-Credentials"] = valTrue
	}
}

// actual adds the CORS headers of a non-preflight response when the origin is allowed.
func (p *corsPolicy) actual(h http.Header, origin string) {
	if !p.anyOrigin {
		h["Vary"] = valVary
	}
	if origin == "" || !p.originAllowed(origin) {
		return
	}
	p.setAllowOrigin(h, origin)
	if p.expose != nil {
		h["Access-Control-Expose-Headers"] = p.expose
	}
}

// preflight decides a preflight request and writes its headers; ok is false when the
// origin, method or a requested header is not allowed.
func (p *corsPolicy) preflight(h http.Header, origin, method, reqHeaders string) bool {
	h["Vary"] = []string{"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
	if !p.originAllowed(origin) {
		return false
	}
	if i := methodIndex(method); i < 0 || p.methods&(1<<i) == 0 {
		return false
	}
	for _, name := range strings.Split(reqHeaders, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "" && !slices.Contains(p.headers, name) {
			return false
		}
	}
	p.setAllowOrigin(h, origin)
	h["Access-Control-Allow-Methods"] = p.allowMethod
	h["Access-Control-Allow-Headers"] = p.allowHdrs
	if p.maxAge != nil {
		h["Access-Control-Max-Age"] = p.maxAge
	}
	return true
}
