package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// tcpProxy forwards connections to its targets in turn (a round-robin balancer when there
// are several). The test controls it: forward, cut (close every connection and refuse new
// ones: a server that is gone) or blackhole (accept connections but move no byte until the
// mode changes: a dead link that TCP has not noticed; bytes stalled then arrive late, as
// TCP's retransmissions would deliver them).
type tcpProxy struct {
	addr    string
	targets []string
	ln      net.Listener
	next    atomic.Uint64
	wg      sync.WaitGroup

	mu     sync.Mutex
	mode   proxyMode
	conns  map[net.Conn]bool
	healed chan struct{} // closed when a blackhole ends
}

type proxyMode int

const (
	forward proxyMode = iota
	cut
	blackhole
)

func newTCPProxy(t testing.TB, targets ...string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: ln.Addr().String(), targets: targets, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.set(cut)
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		if mode == cut {
			in.Close()
			continue
		}
		var out net.Conn
		start := p.next.Add(1)
		for i := range uint64(len(p.targets)) {
			if out, err = net.Dial("tcp", p.targets[(start+i)%uint64(len(p.targets))]); err == nil {
				break
			}
		}
		if out == nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(out, in) })
		p.wg.Go(func() { p.pipe(in, out) })
	}
}

// pipe copies src to dst until either fails, stalling while blackholed.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.stall()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall waits while the proxy is a blackhole.
func (p *tcpProxy) stall() {
	for {
		p.mu.Lock()
		if p.mode != blackhole {
			p.mu.Unlock()
			return
		}
		ch := p.healed
		p.mu.Unlock()
		<-ch
	}
}

// set changes the mode; cutting closes every open connection.
func (p *tcpProxy) set(mode proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mode == blackhole && p.mode != blackhole {
		p.healed = make(chan struct{})
	}
	if mode != blackhole && p.mode == blackhole {
		close(p.healed)
	}
	if mode == cut {
		for c := range p.conns {
			c.Close()
		}
	}
	p.mode = mode
}
