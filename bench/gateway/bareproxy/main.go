// Command bareproxy is the gateway benchmark's reference: a bare httputil.ReverseProxy
// (Rewrite: target URL and X-Forwarded-*, nothing else) with the same TLS and server
// settings as the Portcullis gateway in front, and the same upstream transport settings
// (HTTPS with the configured CA, HTTP/2 when the upstream offers it, the same pool sizes)
// behind. It prints "listening ADDR" once it accepts connections.
//
//	bareproxy -listen 127.0.0.1:0 -cert gateway.pem -key gateway-key.pem \
//	          -target https://127.0.0.1:9001 -ca ca.pem
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // only served with -pprof
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/internal/web"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	target := flag.String("target", "", "upstream URL (https://...)")
	ca := flag.String("ca", "", "CA of the upstream's certificate (PEM)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this loopback address (profiling the reference)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }() //nolint:gosec // loopback, bench only
	}
	if err := run(*listen, *cert, *key, *target, *ca); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func run(listen, cert, key, target, ca string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad -target %q", target)
	}
	serverTLS, err := web.ServerTLS(cert, key, "")
	if err != nil {
		return err
	}
	clientTLS, err := web.ClientTLS(ca)
	if err != nil {
		return err
	}
	// The gateway's upstream transport settings (internal/gateway/route.go).
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       clientTLS,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}},
	}
	srv := web.NewServer(web.ServerOptions{Handler: proxy, TLS: serverTLS})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return web.Serve(ctx, srv, ln, 5*time.Second)
}

// bufferPool lends the proxy its copy buffers, as the gateway does.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
