package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/web"
)

// edgeSettings are the listener's settings, fixed when the Gateway is created (a reload
// does not change them).
type edgeSettings struct {
	tls              *tls.Config // nil: plain HTTP (gateway.insecure_http)
	maxHead          int         // bound of a request head for the framing validator
	handshakeTimeout time.Duration
	headerTimeout    time.Duration // how long a head may take once its first byte came
}

func newEdgeSettings(cfg *config.Config) (edgeSettings, error) {
	gw := cfg.Gateway
	var es edgeSettings
	if !gw.InsecureHTTP {
		ca := ""
		if gw.TLS.ClientCA != "" {
			ca = cfg.Path(gw.TLS.ClientCA)
		}
		var err error
		if es.tls, err = web.ServerTLS(cfg.Path(gw.TLS.Cert), cfg.Path(gw.TLS.Key), ca); err != nil {
			return es, err
		}
	}
	l := gw.Limits
	maxHeader := int(l.MaxHeaderBytes)
	if maxHeader <= 0 {
		maxHeader = 32 << 10
	}
	// net/http reads at most MaxHeaderBytes+4096 bytes for a head, and may hold up to 4096
	// more in its buffer from the previous read: a longer head can never be accepted.
	es.maxHead = maxHeader + 8<<10
	// The TLS handshake gets what net/http would give it: the shortest configured timeout.
	for _, d := range []time.Duration{l.ReadHeaderTimeout, l.ReadTimeout, l.WriteTimeout} {
		if d > 0 && (es.handshakeTimeout == 0 || d < es.handshakeTimeout) {
			es.handshakeTimeout = d
		}
	}
	if es.handshakeTimeout == 0 {
		es.handshakeTimeout = 5 * time.Second
	}
	// net/http starts its header timeout when a request's first bytes arrive; here they are
	// held until the head is complete, so the validator applies the same timeout itself.
	es.headerTimeout = l.ReadHeaderTimeout
	if es.headerTimeout <= 0 {
		es.headerTimeout = l.ReadTimeout
	}
	if es.headerTimeout <= 0 {
		es.headerTimeout = 5 * time.Second
	}
	return es, nil
}

// Listener wraps ln, a raw TCP listener, for the *http.Server that Server returns; serve
// that server on nothing else. Over TLS, the listener performs the handshake itself
// (concurrently, bounded by the shortest of the read-header, read and write timeouts).
// Connections that negotiate h2 are handed over as the *tls.Conn (HTTP/2 framing has no
// Content-Length/Transfer-Encoding ambiguity, and http.Server needs the concrete type to
// speak it); HTTP/1.x connections, and every connection of a plain-HTTP listener, pass
// through a strict framing validator that flags the requests the gateway then refuses
// (see framing). Closing the listener aborts handshakes in progress.
func (g *Gateway) Listener(ln net.Listener) net.Listener {
	el := &edgeListener{Listener: ln, s: g.edge, log: g.log, m: g.metrics, dead: make(chan struct{})}
	el.ctx, el.cancel = context.WithCancel(context.Background())
	if el.s.tls != nil {
		el.conns = make(chan net.Conn)
		el.errs = make(chan error)
		go el.acceptLoop()
	}
	return el
}

type edgeListener struct {
	net.Listener
	s      edgeSettings
	log    *slog.Logger
	m      *metrics
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	conns   chan net.Conn // handshaken connections
	errs    chan error    // temporary accept errors, one at a time
	dead    chan struct{} // closed when the accept loop ended on a permanent error
	deadErr error
}

// Accept returns the next connection ready for HTTP.
func (l *edgeListener) Accept() (net.Conn, error) {
	if l.s.tls == nil {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		fc := &framedConn{Conn: c}
		fc.init(l.s, &l.m.framing)
		return fc, nil
	}
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.dead:
		return nil, l.deadErr
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting, aborts handshakes in progress and closes the socket.
func (l *edgeListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		l.cancel()
		err = l.Listener.Close()
	})
	return err
}

func (l *edgeListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if isTemporary(err) {
				// http.Server backs off on temporary errors before accepting again.
				select {
				case l.errs <- err:
					continue
				case <-l.ctx.Done():
					return
				}
			}
			l.deadErr = err
			close(l.dead)
			return
		}
		go l.handshake(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (l *edgeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.s.tls)
	ctx, cancel := context.WithTimeout(l.ctx, l.s.handshakeTimeout)
	_ = tc.SetDeadline(time.Now().Add(l.s.handshakeTimeout))
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.m.handshakeFailures.Inc()
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			_, _ = io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		_ = c.Close()
		l.log.Debug("tls handshake failed", "remote", c.RemoteAddr().String(), "error", err)
		return
	}
	_ = tc.SetDeadline(time.Time{})
	var out net.Conn = tc
	if state := tc.ConnectionState(); state.NegotiatedProtocol != "h2" {
		fc := &framedConn{Conn: tc, tls: &state}
		fc.init(l.s, &l.m.framing)
		out = tlsFramedConn{fc}
	}
	select {
	case l.conns <- out:
	case <-l.ctx.Done():
		_ = out.Close()
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of a plain HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

// framedConn is an HTTP/1.x connection watched by the framing validator. net/http reads
// it from one goroutine at a time; the handler learns about problems through admit.
//
// A request head reaches net/http only once the validator has seen all of it: a head that
// is still incomplete at the end of a read is held back (in a pooled buffer; most heads
// arrive in one read and are never copied). So when the validator refuses a head, net/http
// has seen none of it: it gets a stand-in head instead, which the handler answers with the
// refusal, and everything the client sends after it is discarded. A problem found in a
// body (a bad chunk) ends the body with a read error after the bytes before it.
type framedConn struct {
	net.Conn
	framing framing
	served  atomic.Int64         // requests handed to the handler so far
	tls     *tls.ConnectionState // nil for plain HTTP
	flags   *[numFramingFlags]prometheus.Counter

	held    *[]byte // the current request's head so far, while it is incomplete
	out     []byte  // bytes due to net/http before anything new is read
	outBuf  *[]byte // the pooled buffer out lives in (nil: static or none)
	discard bool    // a refused head was replaced: swallow everything that follows
	failed  bool    // a body was refused: every read fails

	headerTimeout time.Duration
	dl            sync.Mutex // guards want and hold: net/http sets deadlines from another goroutine
	want          time.Time  // the read deadline net/http asked for
	hold          time.Time  // the deadline of the head being held (zero: none)
}

// errFraming ends the body of a request whose chunked framing the validator refused.
var errFraming = errors.New("gateway: malformed chunked request body")

// refusedHead stands in for a request head the validator refused. The handler answers it
// with the refusal, never with a route.
var refusedHead = []byte("GET / HTTP/1.1\r\nHost: refused.invalid\r\nConnection: close\r\n\r\n")

// headBuffers hold incomplete heads (and a completed head on its way out).
var headBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

func (c *framedConn) init(s edgeSettings, flags *[numFramingFlags]prometheus.Counter) {
	c.framing.init(s.maxHead)
	c.headerTimeout = s.headerTimeout
	c.flags = flags
}

// SetReadDeadline records net/http's read deadline. While a head is held back the
// connection's own deadline is the earlier of it and the head's.
func (c *framedConn) SetReadDeadline(t time.Time) error {
	c.dl.Lock()
	defer c.dl.Unlock()
	c.want = t
	return c.Conn.SetReadDeadline(c.deadlineLocked())
}

// SetDeadline sets the write deadline and, as SetReadDeadline, the read deadline.
func (c *framedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// holdFrom starts (or, with a zero time, ends) the header timeout of a held head.
func (c *framedConn) holdFrom(start time.Time) {
	if c.headerTimeout <= 0 {
		return
	}
	c.dl.Lock()
	defer c.dl.Unlock()
	c.hold = time.Time{}
	if !start.IsZero() {
		c.hold = start.Add(c.headerTimeout)
	}
	_ = c.Conn.SetReadDeadline(c.deadlineLocked())
}

func (c *framedConn) deadlineLocked() time.Time {
	if c.hold.IsZero() || !c.want.IsZero() && c.want.Before(c.hold) {
		return c.want
	}
	return c.hold
}

// Read reads from the connection and follows the bytes through the validator. In the
// steady state (whole heads per read) it neither copies nor allocates.
func (c *framedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			if len(c.out) == 0 {
				c.out = nil
				putBuffer(&c.outBuf)
			}
			return n, nil
		}
		switch {
		case c.failed:
			return 0, errFraming
		case c.discard:
			if _, err := c.Conn.Read(p); err != nil {
				return 0, err
			}
			continue
		case c.held != nil:
			// An incomplete head goes on in its own buffer, whatever the size of p (net/http's
			// background read asks for one byte at a time).
			if err := c.readHeld(); err != nil && len(c.out) == 0 {
				return 0, err
			}
			continue
		}
		n, err := c.Conn.Read(p)
		if n > 0 && c.framing.state != fsStopped {
			n = c.filter(p[:n])
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// filter follows p, fresh from the connection, through the validator and returns how many of
// its bytes go to net/http now. An incomplete head at its end is held back; what is due
// after the returned bytes is queued in out.
func (c *framedConn) filter(p []byte) int {
	f := &c.framing
	before := f.requests
	f.scan(p)
	began := f.requests != before
	switch {
	case f.state == fsStopped:
		c.count()
		if f.stopInHead {
			// The refused head began in p: net/http gets what came before it, then the
			// stand-in, and nothing after.
			c.discard = true
			c.out = refusedHead
			return f.lastStart
		}
		c.failed = true // in a body: what came before the problem, then read errors
		return f.stopPos
	case f.inHead():
		start := 0 // the head began in an earlier read: all of p is part of it
		if began {
			start = f.lastStart
		}
		c.held = headBuffers.Get().(*[]byte)
		*c.held = append((*c.held)[:0], p[start:]...)
		c.holdFrom(time.Now())
		return start
	}
	return len(p)
}

// readHeld reads more of an incomplete head into the held buffer and follows it through
// the validator. When the head is complete (or refused), the buffer becomes out.
func (c *framedConn) readHeld() error {
	buf := *c.held
	old := len(buf)
	if cap(buf)-old < 2<<10 {
		buf = append(make([]byte, 0, 2*cap(buf)+4<<10), buf...)
	}
	n, err := c.Conn.Read(buf[old:cap(buf)])
	if n <= 0 {
		*c.held = buf
		return err
	}
	buf = buf[:old+n]
	*c.held = buf
	f := &c.framing
	before := f.requests
	f.scan(buf[old:])
	began := f.requests != before // so the held head is complete
	switch {
	case f.state == fsStopped:
		c.count()
		if !f.stopInHead {
			c.failed = true
			c.release(buf[:old+f.stopPos])
			return nil
		}
		c.discard = true
		if !began {
			putBuffer(&c.held) // the refused head itself: net/http never sees it
			c.holdFrom(time.Time{})
			c.out = refusedHead
			return nil
		}
		c.release(append(buf[:old+f.lastStart], refusedHead...))
	case f.inHead() && began:
		next := headBuffers.Get().(*[]byte)
		*next = append((*next)[:0], buf[old+f.lastStart:]...)
		c.release(buf[:old+f.lastStart])
		c.held = next
		c.holdFrom(time.Now())
	case !f.inHead():
		c.release(buf)
	}
	return nil
}

// release makes b, which lives in the held buffer, the bytes due next.
func (c *framedConn) release(b []byte) {
	*c.held = b
	c.outBuf, c.held = c.held, nil
	c.out = b
	c.holdFrom(time.Time{})
}

// count records a refusal in the metrics.
func (c *framedConn) count() {
	if c.flags != nil {
		_, why := c.framing.flagged()
		c.flags[why].Inc()
	}
}

func putBuffer(b **[]byte) {
	if *b == nil {
		return
	}
	if cap(**b) <= 64<<10 {
		**b = (**b)[:0]
		headBuffers.Put(*b)
	}
	*b = nil
}

// CloseWrite half-closes the connection when the underlying one can (net/http uses it to
// let a client read an error before the connection goes away).
func (c *framedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// admit counts one request handed to the handler and returns the framing problem that
// refuses it: its own, or one of an earlier request on the connection (found while its
// body was read), or framingClean. standIn reports whether the request is the stand-in
// for a refused head (its method and target mean nothing).
func (c *framedConn) admit() (idx int64, why framingFlag, standIn bool) {
	idx = c.served.Add(1) - 1
	why = c.refused(idx)
	return idx, why, why != framingClean && idx == c.framing.flaggedAt.Load() && c.framing.flaggedInHead.Load()
}

// refused returns the framing problem that refuses request idx of the connection (one of its
// own or of an earlier request), or framingClean.
func (c *framedConn) refused(idx int64) framingFlag {
	at, why := c.framing.flagged()
	if at < 0 || idx < at {
		return framingClean
	}
	return why
}

// tlsFramedConn is a framedConn over TLS. ConnectionState lets http.Server fill in
// Request.TLS although the connection is not a *tls.Conn.
type tlsFramedConn struct{ *framedConn }

// ConnectionState returns the TLS state of the handshake the listener performed.
func (c tlsFramedConn) ConnectionState() tls.ConnectionState { return *c.tls }

type connKey struct{}

// connContext is the Server's ConnContext: it makes the validated connection available to
// the handler.
func connContext(ctx context.Context, c net.Conn) context.Context {
	switch fc := c.(type) {
	case *framedConn:
		return context.WithValue(ctx, connKey{}, fc)
	case tlsFramedConn:
		return context.WithValue(ctx, connKey{}, fc.framedConn)
	}
	return ctx
}
