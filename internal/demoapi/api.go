package demoapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/web"
	"github.com/portcullis/portcullis/jwtverify"
)

// Defaults of Options.
const (
	DefaultMaxOrders            = 10_000
	DefaultMaxOrdersPerCustomer = 1_000
	DefaultTokenCacheSize       = 4096
)

// ownerPolicy decides whether the caller may see an order: the order's customer is the one the
// issuer asserted for the token. Deny by default: a missing claim is an evaluation error, a
// claim of another type compares unequal, and an order without a customer matches no one.
const ownerPolicy = `resource.customer != "" && claims.customer_id == resource.customer`

// Options configure the API. Issuer, Audience and Keys are required.
type Options struct {
	// Issuer is the expected "iss" of every token.
	Issuer string
	// Audience are the accepted "aud" values; a token must name at least one.
	Audience []string
	// Keys are the issuer's public keys: jwtverify.NewRemoteJWKS on its JWKS URL, or an
	// in-process source.
	Keys jwtverify.KeySource
	// Logger receives the access log and the reasons of refusals (never a token). Default:
	// discard.
	Logger *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time

	// Algorithms the issuer signs with; default {"ES256"}. Asymmetric only (jwtverify refuses
	// the rest).
	Algorithms []string
	// TokenCacheSize is the number of verified tokens remembered by their SHA-256 (their exp is
	// checked again on every use). 0 means DefaultTokenCacheSize; negative disables the cache.
	TokenCacheSize int
	// MaxOrders bounds the orders created through the API, in all (default 10,000);
	// MaxOrdersPerCustomer bounds them per customer (default 1,000), so one customer cannot
	// fill the store for the others. Past either, creating answers 507.
	MaxOrders, MaxOrdersPerCustomer int
}

// API is the demo orders API. Build it with New; it is safe for concurrent use.
type API struct {
	verifier *jwtverify.Verifier
	owner    *jwtverify.Policy
	store    *orderStore
	log      *slog.Logger
	now      func() time.Time
	handler  http.Handler
}

// New checks o and builds the API with its seed data.
func New(o Options) (*API, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cache := o.TokenCacheSize
	switch {
	case cache == 0:
		cache = DefaultTokenCacheSize
	case cache < 0:
		cache = 0
	}
	if o.MaxOrders == 0 {
		o.MaxOrders = DefaultMaxOrders
	}
	if o.MaxOrdersPerCustomer == 0 {
		o.MaxOrdersPerCustomer = DefaultMaxOrdersPerCustomer
	}
	if o.MaxOrders < 0 || o.MaxOrdersPerCustomer < 0 {
		return nil, errors.New("demoapi: order limits must not be negative")
	}
	v, err := jwtverify.New(jwtverify.Config{
		Issuer:     o.Issuer,
		Audiences:  o.Audience,
		Algorithms: o.Algorithms,
		Types:      []string{jwtverify.DefaultType},
		// RFC 9068 §2.2: an access token carries all of these.
		RequiredClaims: []string{"sub", "client_id", "iat", "jti"},
		Keys:           o.Keys,
		CacheSize:      cache,
		Now:            o.Now,
		Logger:         o.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("demoapi: %w", err)
	}
	owner, err := jwtverify.CompilePolicy(ownerPolicy)
	if err != nil {
		return nil, fmt.Errorf("demoapi: owner policy: %w", err)
	}
	a := &API{
		verifier: v,
		owner:    owner,
		store:    newOrderStore(o.MaxOrders, o.MaxOrdersPerCustomer),
		log:      o.Logger,
		now:      o.Now,
	}
	a.handler = a.build()
	return a, nil
}

// Handler serves every route of the API; serve it over TLS.
func (a *API) Handler() http.Handler { return a.handler }

// endpoint handles a request whose token was verified.
type endpoint func(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims)

func (a *API) build() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/orders", methods{http.MethodGet: a.listOrders, http.MethodPost: a.createOrder})
	mux.Handle("/api/orders/{id}", methods{http.MethodGet: a.getOrder})
	mux.Handle("/api/whoami", methods{http.MethodGet: a.whoami})
	mux.Handle("/internal/reports", methods{http.MethodGet: a.reports})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.RequestInfo(r.Context()).Reason = "no route"
		web.Error(w, r, http.StatusNotFound, "")
	})
	var h http.Handler = mux
	h = a.authenticate(h)
	h = requireCleanPath(h)
	h = noStore(h)
	h = web.SecurityHeaders(true, h)
	h = web.AccessLog(a.log, h)
	h = web.Recover(a.log, h)
	return web.WithRequestID(h)
}

// methods dispatches on the request method: 405 with Allow for any other.
type methods map[string]endpoint

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, ok := m[r.Method]
	if !ok {
		allowed := make([]string, 0, len(m))
		for _, meth := range []string{http.MethodGet, http.MethodPost} {
			if _, ok := m[meth]; ok {
				allowed = append(allowed, meth)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		web.RequestInfo(r.Context()).Reason = "method not allowed"
		web.Error(w, r, http.StatusMethodNotAllowed, "")
		return
	}
	c, ok := jwtverify.ClaimsFromContext(r.Context())
	if !ok { // authenticate runs first; fail closed if it ever does not
		unauthorized(w, r, "Bearer", "")
		return
	}
	e(w, r, c)
}

// noStore marks every response as not cacheable: they all depend on the caller.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// requireCleanPath refuses a path that is not in its clean form ("..", ".", "//") with 400
// rather than letting the mux redirect: an API has nothing to say to such a request, and the
// gateway refuses them too.
func requireCleanPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		if p == "" || p[0] != '/' || clean != p || strings.ContainsAny(p, "\\\x00") {
			web.RequestInfo(r.Context()).Reason = "unclean path"
			web.Error(w, r, http.StatusBadRequest, "The request path is not in canonical form.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate verifies the request's bearer at+jwt with jwtverify and passes its claims on in
// the context. Failures: 401 `Bearer` without a bearer credential, 401 `Bearer
// error="invalid_token"` for one that does not verify (why goes to the log only), 400 `Bearer
// error="invalid_request"` for several Authorization headers or an empty token, 503 when the
// issuer's keys are unavailable.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := web.RequestInfo(r.Context())
		values := r.Header.Values("Authorization")
		if len(values) > 1 {
			info.Reason = "several authorization headers"
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
			web.Error(w, r, http.StatusBadRequest, "Send one Authorization header.")
			return
		}
		var token string
		if len(values) == 1 {
			scheme, rest, _ := strings.Cut(values[0], " ")
			if strings.EqualFold(scheme, "Bearer") {
				token = strings.TrimLeft(rest, " ")
				if token == "" {
					info.Reason = "empty bearer token"
					w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
					web.Error(w, r, http.StatusBadRequest, "The bearer token is empty.")
					return
				}
			}
		}
		if token == "" {
			info.Reason = "no bearer token"
			unauthorized(w, r, "Bearer", "A bearer access token is required.")
			return
		}
		claims, err := a.verifier.Verify(r.Context(), token)
		if err != nil {
			info.Reason = "token rejected: " + err.Error() // jwtverify errors never contain the token
			if errors.Is(err, jwtverify.ErrKeysUnavailable) {
				a.log.Warn("issuer keys unavailable", "request_id", web.RequestID(r.Context()), "err", err)
				web.Error(w, r, http.StatusServiceUnavailable, "")
				return
			}
			unauthorized(w, r, `Bearer error="invalid_token"`, "The access token is not valid.")
			return
		}
		info.ClientID, info.Subject = claims.ClientID, claims.Subject
		next.ServeHTTP(w, r.WithContext(jwtverify.ContextWithClaims(r.Context(), claims)))
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request, challenge, detail string) {
	w.Header().Set("WWW-Authenticate", challenge)
	web.Error(w, r, http.StatusUnauthorized, detail)
}

// requireScope reports whether c grants scope; if not it answers 403 insufficient_scope.
func requireScope(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims, scope string) bool {
	if c.HasScope(scope) {
		return true
	}
	web.RequestInfo(r.Context()).Reason = "missing scope " + scope
	w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+scope+`"`)
	web.Error(w, r, http.StatusForbidden, "The access token lacks the scope "+scope+".")
	return false
}

// customerOf returns the token's customer_id claim; without a non-empty string one it answers
// 403: orders belong to customers, and the issuer did not say which one this caller is.
func customerOf(w http.ResponseWriter, r *http.Request, c *jwtverify.Claims) (string, bool) {
	if id, ok := c.String("customer_id"); ok && id != "" {
		return id, true
	}
	web.RequestInfo(r.Context()).Reason = "no customer_id claim"
	web.Error(w, r, http.StatusForbidden, "The access token names no customer.")
	return "", false
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		web.Error(w, r, http.StatusInternalServerError, "")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
