package sqlstore_test

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
)

// faultProxy is a TCP proxy in front of PostgreSQL whose link the test breaks and heals.
type faultProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	pairs map[*pair]struct{}
}

type proxyMode int

const (
	proxyUp        proxyMode = iota
	proxyRefuse              // the server is gone: connections are reset
	proxyBlackhole           // the network drops everything: nothing answers, nothing closes
)

type pair struct {
	client, server net.Conn
	frozen         bool
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, pairs: map[*pair]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.set(proxyRefuse)
	})
	go p.serve()
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		switch mode {
		case proxyRefuse:
			c.Close()
		case proxyBlackhole:
			pr := &pair{client: c, frozen: true}
			p.track(pr)
			go io.Copy(io.Discard, c)
		case proxyUp:
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			pr := &pair{client: c, server: s}
			p.track(pr)
			go p.pipe(pr, s, c)
			go p.pipe(pr, c, s)
		}
	}
}

func (p *faultProxy) track(pr *pair) {
	p.mu.Lock()
	p.pairs[pr] = struct{}{}
	p.mu.Unlock()
}

// pipe copies src to dst. When the link is frozen it keeps swallowing what the client sends
// and never closes the client: to the client the peer simply goes silent.
func (p *faultProxy) pipe(pr *pair, dst, src net.Conn) {
	io.Copy(dst, src)
	p.mu.Lock()
	frozen := pr.frozen
	p.mu.Unlock()
	if frozen {
		if src == pr.client {
			io.Copy(io.Discard, src)
		}
		return
	}
	pr.client.Close()
	pr.server.Close()
}

func (p *faultProxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for pr := range p.pairs {
		switch m {
		case proxyBlackhole:
			pr.frozen = true
			if pr.server != nil {
				pr.server.Close()
			}
		default: // refuse, or back up: old connections are gone either way
			pr.frozen = false
			pr.client.Close()
			if pr.server != nil {
				pr.server.Close()
			}
			delete(p.pairs, pr)
		}
	}
}

// viaProxy rewrites the DSN's host to the proxy.
func viaProxy(t *testing.T, dsn, addr string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("%s is not a URL with a host; the outage test needs one", postgresEnv)
	}
	u.Host = addr
	return u.String()
}

func TestPostgresOutage(t *testing.T) {
	dsn := postgresDSN(t)
	u, _ := url.Parse(dsn)
	proxy := newFaultProxy(t, u.Host)
	o := postgresOptions(t, dsn)
	o.DSN = viaProxy(t, dsn, proxy.addr())
	o.QueryTimeout = 500 * time.Millisecond
	o.MaxOpenConns = 4
	db := mustOpen(t, o)

	ok := func(t *testing.T, hash string) {
		t.Helper()
		var err error
		for range 3 { // the first call after healing may meet a connection that died meanwhile
			if err = db.CreateToken(t.Context(), token(hash)); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("store did not recover: %v", err)
		}
		if _, err := db.GetToken(t.Context(), hash); err != nil {
			t.Fatalf("get after recovery: %v", err)
		}
	}
	ok(t, "before")

	calls := map[string]func() error{
		"ping":         func() error { return db.Ping(t.Context()) },
		"get_token":    func() error { _, err := db.GetToken(t.Context(), "before"); return err },
		"create_token": func() error { return db.CreateToken(t.Context(), token("during")) },
		"consume":      func() error { _, err := db.ConsumeToken(t.Context(), "before", base, nil); return err },
		"update_keys": func() error {
			_, err := db.UpdateKeys(t.Context(), func(ks []store.SigningKey) ([]store.SigningKey, error) { return ks, nil })
			return err
		},
	}
	for _, mode := range []struct {
		name string
		m    proxyMode
	}{{"server_gone", proxyRefuse}, {"network_silent", proxyBlackhole}} {
		t.Run(mode.name, func(t *testing.T) {
			proxy.set(mode.m)
			for name, call := range calls {
				start := time.Now()
				err := call()
				took := time.Since(start)
				t.Logf("%s: %v after %v", name, err, took)
				if !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("%s: got %v, want store.ErrUnavailable", name, err)
				}
				if took > o.QueryTimeout+250*time.Millisecond {
					t.Errorf("%s took %v, more than the %v query timeout", name, took, o.QueryTimeout)
				}
			}
			proxy.set(proxyUp)
			ok(t, "after_"+mode.name)
			if _, err := db.GetToken(t.Context(), "during"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a write that failed in the outage left a record: %v", err)
			}
			tok, err := db.GetToken(t.Context(), "before")
			if err != nil || !tok.UsedAt.IsZero() {
				t.Fatalf("a consume that failed in the outage left a mark: %v, used %v", err, tok.UsedAt)
			}
		})
	}

	t.Run("open_while_down", func(t *testing.T) {
		proxy.set(proxyRefuse)
		defer proxy.set(proxyUp)
		start := time.Now()
		_, err := sqlstore.Open(t.Context(), o)
		if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > o.QueryTimeout+250*time.Millisecond {
			t.Fatalf("open while down: %v after %v; want store.ErrUnavailable within the timeout", err, time.Since(start))
		}
	})
}

var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func token(hash string) store.Token {
	return store.Token{Hash: hash, Kind: store.KindRefresh, Format: "opaque", ClientID: "c1", Subject: "alice",
		Scopes: []string{"orders:read"}, IssuedAt: base, ExpiresAt: base.Add(time.Hour)}
}
