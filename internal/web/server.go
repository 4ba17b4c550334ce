package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Timeouts bound how long a connection may take at each stage. Zero fields get safe defaults.
type Timeouts struct {
	ReadHeader time.Duration // default 5s: slowloris protection
	Read       time.Duration // default 30s
	Write      time.Duration // default 60s
	Idle       time.Duration // default 120s
}

// ServerOptions configures NewServer.
type ServerOptions struct {
	Addr           string
	Handler        http.Handler
	TLS            *tls.Config // nil serves plain HTTP
	Timeouts       Timeouts
	MaxHeaderBytes int // default 32 KiB
	Logger         *slog.Logger
}

// NewServer returns an http.Server with timeouts, header limits and a logger; never the
// zero-timeout defaults of net/http.
func NewServer(o ServerOptions) *http.Server {
	t := o.Timeouts
	if t.ReadHeader == 0 {
		t.ReadHeader = 5 * time.Second
	}
	if t.Read == 0 {
		t.Read = 30 * time.Second
	}
	if t.Write == 0 {
		t.Write = 60 * time.Second
	}
	if t.Idle == 0 {
		t.Idle = 120 * time.Second
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 32 << 10
	}
	srv := &http.Server{
		Addr:              o.Addr,
		Handler:           o.Handler,
		TLSConfig:         o.TLS,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    o.MaxHeaderBytes,
	}
	if o.Logger != nil {
		srv.ErrorLog = slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)
	}
	return srv
}

// Serve runs srv on ln (wrapping it in TLS when srv.TLSConfig is set) until ctx is done,
// then shuts down gracefully: in-flight requests get up to grace to finish.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Grace is over: cut what is still running, so nothing is served after the caller
		// goes on to close the store.
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// ServerTLS loads a certificate and key and returns a server TLS config: TLS 1.2 or newer,
// HTTP/2 and HTTP/1.1. With clientCA, client certificates are requested and verified when
// presented (mTLS routes decide whether one is required).
func ServerTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if clientCA != "" {
		pool, err := LoadCertPool(clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// LoadCertPool reads PEM certificates from file into a new pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificates in %s", file)
	}
	return pool, nil
}

// ClientTLS returns a client TLS config trusting the CAs in caFile (system roots when empty).
func ClientTLS(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
