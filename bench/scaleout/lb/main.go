// Command lb is a tiny round-robin TCP balancer for trying a scale-out on one machine
// (docs/scale-out.md): each new connection goes to the next backend that accepts it, so TLS
// passes through untouched. It is not a production balancer: no health checks beyond
// "connect failed, try the next", no limits, no metrics.
//
//	go run ./bench/scaleout/lb -listen 127.0.0.1:9443 127.0.0.1:9444 127.0.0.1:9445 127.0.0.1:9446
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "address to accept connections on")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: lb [-listen ADDR] BACKEND...\n\nForwards each connection to the next backend (round robin) that accepts it.\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	backends := flag.Args()
	if len(backends) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("balancing %s over %v", ln.Addr(), backends)
	var next atomic.Uint64
	for {
		in, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer in.Close()
			start := next.Add(1)
			for i := range uint64(len(backends)) {
				addr := backends[(start+i)%uint64(len(backends))]
				out, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
				out.Close()
				return
			}
			log.Printf("no backend accepted a connection")
		}()
	}
}
