package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/portcullis/portcullis/jwtverify"
)

// Header values shared by every response; never appended to in place (len == cap).
var (
	valNosniff    = []string{"nosniff"}
	valHSTS       = []string{"max-age=31536000; includeSubDomains"}
	valHTTPS      = []string{"https"}
	valHTTP       = []string{"http"}
	valRetryAfter = []string{"1"}
	valClose      = []string{"close"}
	challengeNone = []string{`Bearer`}
	challengeBad  = []string{`Bearer error="invalid_token"`}
	challengeReq  = []string{`Bearer error="invalid_request"`}
)

// responseStripped are upstream response headers the client never sees: software banners,
// headers the gateway sets itself, and credentials.
var responseStripped = map[string]bool{
	"Server": true, "X-Powered-By": true, "X-Aspnet-Version": true, "X-Aspnetmvc-Version": true,
	"X-Runtime": true, "X-Request-Id": true, "X-Content-Type-Options": true,
	"Strict-Transport-Security": true, "Authorization": true,
}

// reqState is what the gateway knows about one request while it is served. It is pooled;
// nothing may keep it after ServeHTTP returns.
type reqState struct {
	rec       recorder
	st        *state
	route     *route
	path      string
	id        string
	clientIP  string
	addr      netip.Addr // the client's address (invalid when the peer's could not be parsed)
	authz     string     // the Authorization header forwarded upstream ("" for none)
	principal tokencheck.Principal
	subject   string
	clientID  string
	reason    string
	status    int           // the status to report when no response was written (client gone)
	standIn   bool          // the request stands in for a refused head: its method means nothing
	in        *http.Request // the request as proxied (set just before the proxy runs)
	conn      *framedConn   // the validated HTTP/1.x connection (nil for HTTP/2)
	connReq   int64         // the request's index on conn
	buf       []byte

	ipThrottled bool                  // the address is on the throttle list
	checks      [4]ratelimit.Check    // room for a phase's checks without allocating
	decided     []ratelimit.Decision  // the limits decided so far (RateLimit headers)
	decidedBuf  [4]ratelimit.Decision // decided's usual backing array
}

type stateKey struct{}

var reqStates = sync.Pool{New: func() any { return &reqState{buf: make([]byte, 0, 512)} }}

func stateOf(ctx context.Context) *reqState {
	rs, _ := ctx.Value(stateKey{}).(*reqState)
	return rs
}

// proxyBuffers lends ReverseProxy its copy buffers instead of a fresh 32 KiB per response.
var proxyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// recorder remembers the status and the bytes written. 1xx responses pass through without
// counting as the final status, cleaned like a final response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	// interim reports that a 1xx was forwarded. ReverseProxy then clears the header map,
	// which held the gateway's own headers, so they must be set again (restoreHeaders).
	interim bool
}

func (w *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An upstream's interim response (100 Continue, 103 Early Hints): ReverseProxy copied
		// its headers into the map, and they never pass through modifyResponse.
		cleanInterim(w.Header())
		w.interim = true
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if (code >= 200 || code == http.StatusSwitchingProtocols) && w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController (flush, hijack for upgrades, deadlines) reach the
// server's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP serves one request through the current configuration. It does not see the
// connection, so it cannot refuse ambiguous HTTP/1.x framing: the server that Server
// returns, on Listener, does that before calling it.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.serveHTTP(w, r, false)
}

// serveEdge is the handler of the server that Server returns: requests that came through
// Listener.
func (g *Gateway) serveEdge(w http.ResponseWriter, r *http.Request) {
	g.serveHTTP(w, r, true)
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request, edge bool) {
	start := time.Now()
	rs := reqStates.Get().(*reqState)
	*rs = reqState{rec: recorder{ResponseWriter: w}, st: g.state.Load(), buf: rs.buf[:0]}
	rs.decided = rs.decidedBuf[:0]
	rs.id = web.NewRequestID()
	var fc *framedConn
	if edge {
		fc, _ = r.Context().Value(connKey{}).(*framedConn)
	}
	r = r.WithContext(context.WithValue(web.ContextWithRequestID(r.Context(), rs.id), stateKey{}, rs))
	if r.TLS == nil && fc != nil && fc.tls != nil {
		r.TLS = fc.tls // the listener did the handshake; r is our own copy
	}
	dropUnderscoreHeaders(r.Header)
	h := w.Header()
	h["X-Request-Id"] = []string{rs.id}
	h["X-Content-Type-Options"] = valNosniff
	if r.TLS != nil {
		h["Strict-Transport-Security"] = valHSTS
	}
	rs.addr, rs.clientIP = clientAddr(r, rs.st)
	defer g.finish(rs, r, start)
	if edge && r.ProtoMajor == 1 && !g.admit(rs, r, fc) {
		return
	}
	g.serve(rs, r)
}

// admit refuses an HTTP/1.x request whose framing the connection's validator flagged (400,
// or 431 for a head too large; the connection is closed), or that did not come through
// Listener at all (500: the gateway is wired wrongly and will not serve unchecked
// requests). It reports whether the request may go on.
func (g *Gateway) admit(rs *reqState, r *http.Request, fc *framedConn) bool {
	if fc == nil {
		g.log.Error("an HTTP/1 request did not come through Gateway.Listener; refused", "request_id", rs.id)
		g.refuse(rs, r, http.StatusInternalServerError, "unchecked_connection", "The request cannot be served.", nil)
		return false
	}
	idx, why, standIn := fc.admit()
	rs.conn, rs.connReq = fc, idx
	if why == framingClean {
		return true
	}
	rs.standIn = standIn
	g.refuseFraming(rs, r, why)
	return false
}

// refuseFraming answers a request refused for its framing and closes the connection.
func (g *Gateway) refuseFraming(rs *reqState, r *http.Request, why framingFlag) {
	rs.rec.Header()["Connection"] = valClose
	if why == framingHeadTooLarge {
		g.refuse(rs, r, http.StatusRequestHeaderFieldsTooLarge, framingLogReasons[why], "The request header is too large.", nil)
		return
	}
	g.refuse(rs, r, http.StatusBadRequest, framingLogReasons[why], "The request's framing is ambiguous or malformed.", nil)
}

// finish logs the request and records its metrics, also after a panic (which it turns into
// a 500 problem, or re-raises when it is http.ErrAbortHandler).
func (g *Gateway) finish(rs *reqState, r *http.Request, start time.Time) {
	v := recover()
	if v != nil && v != http.ErrAbortHandler {
		g.log.Error("panic serving request", "request_id", rs.id, "panic", v, "stack", string(debug.Stack()))
		if rs.rec.status == 0 {
			web.Error(&rs.rec, r, http.StatusInternalServerError, "")
		}
		rs.reason = "panic"
	}
	if v == http.ErrAbortHandler && rs.reason == "" {
		rs.reason = "aborted"
	}
	status := rs.rec.status
	if status == 0 {
		status = rs.status
	}
	if status == 0 {
		status = http.StatusOK
	}
	if rt := rs.route; rt != nil && rt.enum != nil && v == nil && rs.clientID != "" && (rs.reason == "" || rs.reason == reasonPolicy) {
		g.observeEnumeration(rs, r, status)
	}
	elapsed := time.Since(start)
	rm := g.noRoute
	route := noRoute
	if rs.route != nil {
		rm, route = rs.route.m, rs.route.name
	}
	rm.request(status, elapsed.Seconds())
	method := r.Method
	if rs.standIn {
		method = "-"
	}
	line := logLine{
		time: start, requestID: rs.id, method: method, path: rs.path, route: route,
		status: status, bytes: rs.rec.bytes, latency: elapsed, clientIP: rs.clientIP,
		clientID: rs.clientID, subject: rs.subject, reason: rs.reason,
	}
	if g.access != nil {
		rs.buf = line.appendJSON(rs.buf[:0])
		g.access.write(rs.buf)
	} else {
		g.log.LogAttrs(r.Context(), slogInfo, "request", line.attrs()...)
	}
	if v == http.ErrAbortHandler {
		panic(v) // net/http expects it; rs is not returned to the pool
	}
	if cap(rs.buf) <= 4096 {
		rs.in = nil
		reqStates.Put(rs)
	}
}

// dropUnderscoreHeaders removes every request header whose name holds an underscore, before
// anything reads the headers. CGI, WSGI, Rack and PHP servers turn both X-User-Id and X_User_Id
// into HTTP_X_USER_ID, so such a name would carry an identity or forwarding header past the
// stripping (which compares canonical names) to an upstream that believes it. nginx drops
// them by default too (underscores_in_headers off).
func dropUnderscoreHeaders(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
}

// clientAddr is the client's address as the trusted-proxy view sees it, parsed and as text.
// Without trusted proxies it allocates nothing.
func clientAddr(r *http.Request, st *state) (netip.Addr, string) {
	if len(st.trusted) == 0 {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{}, host
		}
		return a.Unmap(), host
	}
	a := web.ClientIP(r, st.trusted)
	return a, a.String()
}

// peerTrusted reports whether the TCP peer is a trusted proxy.
func peerTrusted(r *http.Request, st *state) bool {
	if len(st.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	peer := ap.Addr().Unmap()
	for _, p := range st.trusted {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// refuse writes a gateway problem. reason is for the log and, for auth failures, the metric.
func (g *Gateway) refuse(rs *reqState, r *http.Request, status int, reason, detail string, challenge []string) {
	rs.reason = reason
	if challenge != nil {
		rs.rec.Header()["Www-Authenticate"] = challenge
	}
	if len(rs.decided) > 0 && reason != reasonRateLimited { // refused after the limits before authentication
		setLimitHeaders(rs.rec.Header(), rs.decided, g.opts.Now())
	}
	if rs.route != nil {
		if c, ok := rs.route.m.auth[reason]; ok {
			c.Inc()
		}
	}
	rm := g.noRoute
	if rs.route != nil {
		rm = rs.route.m
	}
	if c, ok := rm.refusals[reason]; ok {
		c.Inc()
	}
	web.WriteProblem(&rs.rec, r, web.Problem{Status: status, Detail: detail})
	if status == http.StatusUnauthorized {
		g.authFailed(rs, r)
	}
}

func (g *Gateway) serve(rs *reqState, r *http.Request) {
	if (rs.st.filter != nil || rs.st.abuse.ipStatus) && !g.admitAddress(rs, r) {
		return
	}
	raw, err := requestPath(r.RequestURI, r.URL.EscapedPath())
	if err == nil {
		rs.path, err = NormalizePath(raw)
	}
	if err != nil {
		g.refuse(rs, r, http.StatusBadRequest, "bad_path: "+pathReason(err), "The request path is malformed or ambiguous.", nil)
		return
	}
	grp := rs.st.table.lookup(hostOnly(r.Host), rs.path)
	if grp == nil {
		g.refuse(rs, r, http.StatusNotFound, "no_route", "No route matches this request.", nil)
		return
	}
	if r.Method == http.MethodOptions && grp.cors {
		// A CORS preflight is answered here; it carries no credentials and never goes upstream.
		if acrm := r.Header.Get("Access-Control-Request-Method"); acrm != "" {
			if origin := r.Header.Get("Origin"); origin != "" {
				prt := grp.route(acrm)
				if prt != nil && prt.filter != nil && !g.admitRouteAddress(rs, r, prt) {
					return
				}
				if prt != nil && prt.cors != nil && prt.cors.preflight(rs.rec.Header(), origin, acrm, r.Header.Get("Access-Control-Request-Headers")) {
					rs.route = prt
					rs.reason = "cors_preflight"
					rs.rec.WriteHeader(http.StatusNoContent)
					return
				}
				rs.route = prt
				g.refuse(rs, r, http.StatusForbidden, "cors_refused", "Cross-origin request refused.", nil)
				return
			}
		}
	}
	mi := methodIndex(r.Method)
	rt := grp.route(r.Method)
	if rt == nil {
		rs.rec.Header()["Allow"] = []string{grp.allow}
		g.refuse(rs, r, http.StatusMethodNotAllowed, "method_not_allowed", "The route does not serve this method.", nil)
		return
	}
	rs.route = rt
	if rt.filter != nil && !g.admitRouteAddress(rs, r, rt) {
		return
	}
	if rt.cors != nil {
		rt.cors.actual(rs.rec.Header(), r.Header.Get("Origin"))
	}
	if r.ContentLength > rt.maxBody {
		g.refuse(rs, r, http.StatusRequestEntityTooLarge, "body_too_large", "The request body is too large.", nil)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Chunked bodies have no length up front: the limit is enforced while the proxy
		// reads, and proxyError turns the overflow into 413.
		r.Body = http.MaxBytesReader(rs.rec.ResponseWriter, r.Body, rt.maxBody)
	}
	if (rt.limits != nil || rs.ipThrottled) && !g.limitBefore(rs, r, rt) {
		return
	}
	if !g.authenticate(rs, r, rt, mi) {
		return
	}
	if (rt.limits != nil || rs.st.abuse.clientStatus) && !g.limitAfter(rs, r, rt) {
		return
	}
	rs.in = r
	rt.proxy.ServeHTTP(&rs.rec, r)
}

func pathReason(err error) string {
	var pe *pathError
	if errors.As(err, &pe) {
		return pe.reason
	}
	return "malformed"
}

// authenticate applies the route's one auth method, its scopes and its policies. It writes
// the refusal itself and reports whether the request may proceed.
func (g *Gateway) authenticate(rs *reqState, r *http.Request, rt *route, mi int) bool {
	authz := r.Header["Authorization"]
	switch rt.auth {
	case authPublic:
		return true // no credentials are forwarded (Authorization is always stripped)
	case authMTLS:
		if len(authz) > 0 {
			g.refuse(rs, r, http.StatusBadRequest, reasonWrongCredential, "This route accepts only client certificates.", nil)
			return false
		}
		name, ok := rt.subjectAllowed(r)
		if !ok {
			g.refuse(rs, r, http.StatusForbidden, reasonClientCert, "A valid, allowed client certificate is required.", nil)
			return false
		}
		rs.subject, rs.clientID = name, name
		return true
	}

	// oauth and jwt: exactly one bearer token in the Authorization header, nothing else.
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		g.refuse(rs, r, http.StatusBadRequest, reasonWrongCredential, "Client certificates are not accepted on this route.", challengeReq)
		return false
	}
	if tokenInQuery(r.URL) {
		g.refuse(rs, r, http.StatusBadRequest, reasonInvalidRequest, "Access tokens are not accepted in the URL.", challengeReq)
		return false
	}
	switch len(authz) {
	case 0:
		g.refuse(rs, r, http.StatusUnauthorized, reasonMissingToken, "A bearer token is required.", challengeNone)
		return false
	case 1:
	default:
		g.refuse(rs, r, http.StatusBadRequest, reasonInvalidRequest, "Send one Authorization header.", challengeReq)
		return false
	}
	tok, scheme := bearerToken(authz[0])
	switch {
	case !scheme:
		g.refuse(rs, r, http.StatusUnauthorized, reasonWrongCredential, "This route accepts only bearer tokens.", challengeNone)
		return false
	case tok == "":
		g.refuse(rs, r, http.StatusUnauthorized, reasonInvalidToken, "The bearer token is malformed.", challengeBad)
		return false
	}

	var p tokencheck.Principal
	var err error
	if rt.auth == authOAuth {
		if looksLikeJWT(tok) {
			g.refuse(rs, r, http.StatusUnauthorized, reasonInvalidToken, "This route accepts only opaque access tokens.", challengeBad)
			return false
		}
		p, err = rs.st.checker.Opaque(r.Context(), tok)
	} else {
		if !looksLikeJWT(tok) {
			g.refuse(rs, r, http.StatusUnauthorized, reasonInvalidToken, "This route accepts only JWT access tokens.", challengeBad)
			return false
		}
		p, err = rt.jwt.Verify(r.Context(), tok)
	}
	if err != nil {
		switch {
		case errors.Is(err, tokencheck.ErrUnavailable):
			g.log.Warn("token check unavailable", "request_id", rs.id, "route", rt.name, "error", err)
			rs.rec.Header()["Retry-After"] = valRetryAfter
			g.refuse(rs, r, http.StatusServiceUnavailable, reasonUnavailable, "The token cannot be checked right now.", nil)
		case r.Context().Err() != nil:
			rs.status, rs.reason = 499, "client_closed"
		default:
			g.refuse(rs, r, http.StatusUnauthorized, reasonInvalidToken, "The access token is invalid or expired.", challengeBad)
			g.log.Debug("token refused", "request_id", rs.id, "route", rt.name, "error", err)
		}
		return false
	}
	rs.principal = p
	rs.subject, rs.clientID = p.Subject(), p.ClientID()
	if len(rt.audiences) > 0 && !audienceOK(p.Claims.Audience, rt.audiences) {
		g.refuse(rs, r, http.StatusUnauthorized, reasonInvalidToken, "The access token is not meant for this API.", challengeBad)
		return false
	}
	if req := rt.requiredScopes(mi); req != nil && !req.satisfied(&p) {
		g.refuse(rs, r, http.StatusForbidden, reasonInsufficientScope, "The access token lacks a required scope.", req.challenge)
		return false
	}
	if rt.policies != nil {
		ok, perr := rt.policies.Allow(r.Context(), jwtverify.PolicyInput{Claims: p.Claims, Request: policyRequest(r, rt, rs.path)})
		if !ok {
			if perr != nil {
				g.log.Debug("policy evaluation failed", "request_id", rs.id, "route", rt.name, "error", perr)
			}
			g.refuse(rs, r, http.StatusForbidden, reasonPolicy, "The request is not allowed.", nil)
			return false
		}
	}
	if rt.auth == authOAuth {
		rs.authz = p.Authorization()
	} else if strings.HasPrefix(authz[0], "Bearer ") && len(authz[0]) == len("Bearer ")+len(tok) {
		rs.authz = authz[0] // the very header the client sent, verified: no new string
	} else {
		rs.authz = "Bearer " + tok
	}
	return true
}

// bearerToken parses an Authorization value. scheme reports whether it uses the Bearer
// scheme; tok is "" when the token is not RFC 6750 b64token syntax.
func bearerToken(v string) (tok string, scheme bool) {
	const prefix = "bearer "
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	tok = strings.TrimLeft(v[len(prefix):], " ")
	if tok == "" || len(tok) > 16<<10 {
		return "", true
	}
	i := 0
	for i < len(tok) && b64tokenTable[tok[i]] {
		i++
	}
	for ; i < len(tok); i++ {
		if tok[i] != '=' {
			return "", true
		}
	}
	return tok, true
}

// b64tokenTable marks the characters of an RFC 6750 b64token before its trailing '='.
var b64tokenTable = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()

// looksLikeJWT reports whether tok has the shape of a compact JWS.
func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// tokenInQuery reports whether the query carries an access_token parameter (RFC 6750 §2.3,
// which leaks tokens into logs and histories; the gateway refuses it).
func tokenInQuery(u *url.URL) bool {
	if !strings.Contains(u.RawQuery, "access_token") {
		return false
	}
	q, _ := url.ParseQuery(u.RawQuery)
	_, ok := q["access_token"]
	return ok
}

func audienceOK(have, want []string) bool {
	for _, a := range have {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}

// policyRequest describes the request to CEL policies; credentials are left out.
func policyRequest(r *http.Request, rt *route, path string) jwtverify.RequestInput {
	in := jwtverify.RequestInput{
		Method:  r.Method,
		Path:    path,
		Params:  rt.path.params(path),
		Headers: make(map[string]string, len(r.Header)),
	}
	for name, values := range r.Header {
		switch name {
		case "Authorization", "Proxy-Authorization", "Cookie":
			continue
		}
		in.Headers[strings.ToLower(name)] = strings.Join(values, ", ")
	}
	return in
}

// rewrite builds the upstream request. ReverseProxy has already removed hop-by-hop headers
// and every inbound Forwarded / X-Forwarded-* header.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	rs := stateOf(pr.In.Context())
	rt := rs.route
	out := pr.Out
	out.URL.Scheme = rt.upstream.Scheme
	out.URL.Host = rt.upstream.Host
	out.URL.Path = rt.upstreamPath(rs.path)
	out.URL.RawPath = ""
	out.Host = ""
	h := out.Header
	for k := range h { // one pass over the few headers sent, not one delete per name
		if rs.st.strip[k] {
			delete(h, k)
		}
	}
	// One allocation for the values the gateway sets (each slice has len == cap, so an
	// append by anyone else copies rather than writes into its neighbour).
	vals := &[4]string{rs.authz, rs.clientIP, pr.In.Host, rs.id}
	if rs.authz != "" {
		h["Authorization"] = vals[0:1:1]
	}
	h["X-Forwarded-For"] = vals[1:2:2]
	proto := valHTTP
	if pr.In.TLS != nil {
		proto = valHTTPS
	}
	if in := pr.In.Header["X-Forwarded-Proto"]; len(in) == 1 && (in[0] == "https" || in[0] == "http") && peerTrusted(pr.In, rs.st) {
		proto = in
	}
	h["X-Forwarded-Proto"] = proto
	if pr.In.Host != "" {
		h["X-Forwarded-Host"] = vals[2:3:3]
	}
	if rs.st.forwardID {
		h["X-Request-Id"] = vals[3:4:4]
	}
}

// hopByHop are the hop-by-hop response headers (RFC 9110 §7.6.1) that ReverseProxy removes
// from final responses but not from the 1xx it forwards.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// cleanInterim removes from a 1xx response's headers what modifyResponse removes from a final
// one, and the hop-by-hop headers. The gateway's own headers go too: they are set again on
// the final response (restoreHeaders).
func cleanInterim(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	for k := range h {
		if responseStripped[k] || strings.HasPrefix(k, "Access-Control-") || k == hdrRateLimit || k == hdrPolicy {
			delete(h, k)
		}
	}
}

// restoreHeaders sets the gateway's own response headers again after a forwarded 1xx cleared
// them: the request id, nosniff, HSTS, CORS and the RateLimit headers.
func (g *Gateway) restoreHeaders(rs *reqState) {
	h := rs.rec.Header()
	h["X-Request-Id"] = []string{rs.id}
	h["X-Content-Type-Options"] = valNosniff
	if rs.in.TLS != nil {
		h["Strict-Transport-Security"] = valHSTS
	}
	if rs.route.cors != nil {
		rs.route.cors.actual(h, rs.in.Header.Get("Origin"))
	}
	if len(rs.decided) > 0 {
		setLimitHeaders(h, rs.decided, g.opts.Now())
	}
}

// modifyResponse cleans the upstream's response headers.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	rs := stateOf(resp.Request.Context())
	if rs != nil && rs.rec.interim {
		g.restoreHeaders(rs) // before ReverseProxy adds the response's own headers
	}
	h := resp.Header
	for k := range h {
		if responseStripped[k] || strings.HasPrefix(k, "Access-Control-") { // the gateway owns CORS
			delete(h, k)
		}
	}
	if rs != nil && len(rs.decided) > 0 { // the gateway's limits, not the upstream's
		delete(h, "Ratelimit")
		delete(h, "Ratelimit-Policy")
	}
	if rs != nil && rs.route.auth != authPublic {
		h["Cache-Control"] = rs.route.cacheControl
	} else if rs != nil && rs.route.publicCache != nil {
		h["Cache-Control"] = rs.route.publicCache
	}
	return nil
}

// proxyError answers a failed upstream round trip: 413 when the body overflowed while being
// forwarded, 504 on a timeout, 502 otherwise; the client learns nothing about the upstream.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	rs := stateOf(r.Context())
	rt := rs.route
	if rs.rec.interim {
		g.restoreHeaders(rs)
	}
	var tooLarge *http.MaxBytesError
	why := framingClean
	if rs.conn != nil {
		why = rs.conn.refused(rs.connReq)
	}
	switch {
	case why != framingClean:
		// The body's chunked framing was refused while it was forwarded.
		g.refuseFraming(rs, r, why)
	case errors.As(err, &tooLarge):
		g.refuse(rs, r, http.StatusRequestEntityTooLarge, "body_too_large", "The request body is too large.", nil)
	case r.Context().Err() != nil:
		rs.status, rs.reason = 499, "client_closed"
	case isTimeout(err):
		rt.m.upstream[upstreamTimeout].Inc()
		g.log.Warn("upstream timeout", "request_id", rs.id, "route", rt.name, "error", err)
		g.refuse(rs, r, http.StatusGatewayTimeout, "upstream_timeout", "The upstream service did not answer in time.", nil)
	default:
		kind := upstreamOther
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			kind = upstreamUnreachable
		}
		rt.m.upstream[kind].Inc()
		g.log.Warn("upstream error", "request_id", rs.id, "route", rt.name, "kind", kind, "error", err)
		g.refuse(rs, r, http.StatusBadGateway, "upstream_"+kind, "The upstream service failed.", nil)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
