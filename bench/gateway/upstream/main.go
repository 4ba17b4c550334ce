// Command upstream is the gateway benchmark's API: an HTTPS server (HTTP/1.1 and HTTP/2,
// the same TLS and server settings as every Portcullis listener) that answers every request
// with the same small JSON body. It prints "listening ADDR" once it accepts connections.
//
//	upstream -listen 127.0.0.1:0 -cert upstream.pem -key upstream-key.pem
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/internal/web"
)

// body is what every request gets: about the size of a small API answer.
var body = []byte(`{"id":"A-1001","item":"anvil","quantity":1,"status":"shipped"}` + "\n")

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	flag.Parse()
	if err := run(*listen, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run(listen, cert, key string) error {
	tlsCfg, err := web.ServerTLS(cert, key, "")
	if err != nil {
		return err
	}
	length := []string{strconv.Itoa(len(body))}
	ctype := []string{"application/json"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hdr := w.Header()
		hdr["Content-Type"] = ctype
		hdr["Content-Length"] = length
		_, _ = w.Write(body)
	})
	srv := web.NewServer(web.ServerOptions{Handler: h, TLS: tlsCfg})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return web.Serve(ctx, srv, ln, 5*time.Second)
}
