// Package devstack runs framecast's whole development stack in one
// process: an embedded NATS server with JetStream, the producer API and the
// gateway (anonymous access, web viewer) behind one HTTP listener, sharing
// one Prometheus registry.
//
// Routes: /v1/outputs/ and /v1/events go to the producer; everything else (/v1/ws,
// /comfyui-deploy/ws, the viewer at /, /framecast.js, /healthz, /readyz,
// /metrics with both services' metrics) goes to the gateway.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/framecast/framecast/services/gateway"
	"github.com/framecast/framecast/services/producer"
	"github.com/framecast/framecast/shared/natsembed"
	"github.com/framecast/framecast/shared/stream"
)

// Defaults of Config's zero fields.
const (
	DefaultAddr     = ":8080"
	DefaultNATSPort = 4222
)

// DefaultStoreDir is where JetStream keeps the stream when Config.StoreDir
// is empty: framecast-data under the system's temporary directory, so the
// replay window survives a restart.
func DefaultStoreDir() string { return filepath.Join(os.TempDir(), "framecast-data") }

// Config configures a Stack; the zero value listens on :8080 with NATS on
// 127.0.0.1:4222.
type Config struct {
	// Addr is the HTTP listen address; default DefaultAddr. Port 0 picks a
	// free port (see Stack.Addr).
	Addr string
	// NATSPort is the embedded NATS server's client port on 127.0.0.1:
	// 0 is DefaultNATSPort, -1 picks a free port.
	NATSPort int
	// StoreDir holds JetStream's files; default DefaultStoreDir().
	StoreDir string
	// Stream configures the OUTPUTS stream; zero is the defaults of package
	// stream.
	Stream stream.Config
	// NATSLogs prints the NATS server's own log on stderr.
	NATSLogs bool
	// AllowedOrigins are the browser origins (host patterns, as the
	// gateway's) allowed besides the stack's own; nil is DevOrigins.
	AllowedOrigins []string
	// Logger; nil discards.
	Logger *slog.Logger
}

// DevOrigins lets a browser app on any localhost, 127.0.0.1 or [::1]
// origin, any port, connect: a Next.js or Vite dev server beside the
// stack.
var DevOrigins = []string{"localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", `\[::1\]`, `\[::1\]:*`}

// Stack is a running development stack. Serve it until Shutdown.
type Stack struct {
	nats     *server.Server
	producer *producer.Server
	gateway  *gateway.Server
	http     *http.Server
	ln       net.Listener
	served   chan error
}

// Start starts NATS, the producer and the gateway, waits until both report
// ready, and begins serving on cfg.Addr. The Stack's goroutines run until
// Shutdown.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = DefaultStoreDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	natsPort := cfg.NATSPort
	switch {
	case natsPort == 0:
		natsPort = DefaultNATSPort
	case natsPort == -1:
		natsPort = 0
	case natsPort < -1 || natsPort > 65535:
		return nil, fmt.Errorf("nats port %d; allowed: -1 (any free port), 0 (default %d) or 1..65535", cfg.NATSPort, DefaultNATSPort)
	}
	st := &Stack{served: make(chan error, 1)}
	if err := st.start(ctx, cfg, natsPort); err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

func (st *Stack) start(ctx context.Context, cfg Config, natsPort int) error {
	var err error
	st.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	st.nats, err = natsembed.Start(natsembed.Config{Name: "framecast-dev", Port: natsPort, StoreDir: cfg.StoreDir, Logs: cfg.NATSLogs})
	if err != nil {
		return fmt.Errorf("start nats on port %d (store %s): %w", natsPort, cfg.StoreDir, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The stack owns its NATS server, so its producer applies the stream
	// (the administrative step of a deployment); the gateway verifies it.
	st.producer, err = producer.New(ctx, producer.Config{
		NATSURL: st.nats.ClientURL(), Stream: cfg.Stream, EnsureStream: true, Registry: reg,
		Logger: cfg.Logger.With("service", "producer"),
	})
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	origins := cfg.AllowedOrigins
	if origins == nil {
		origins = DevOrigins
	}
	cfg.Logger.Info("browser apps on these origins may connect besides the stack's own", "allowed_origins", strings.Join(origins, ","))
	st.gateway, err = gateway.New(ctx, gateway.Config{
		NATSURL: st.nats.ClientURL(), Stream: cfg.Stream, ID: "framecast-dev",
		AllowAnonymous: true, Viewer: true, Registry: reg, AllowedOrigins: origins,
		Logger: cfg.Logger.With("service", "gateway"),
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/outputs/", st.producer.Handler())
	mux.Handle("/v1/events", st.producer.Handler())
	mux.Handle("/", st.gateway.Handler())
	// The producer's read and idle deadlines bound every connection; a
	// websocket is the gateway's once upgraded and outlives them.
	st.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: producer.DefaultReadTimeout, IdleTimeout: producer.DefaultIdleTimeout,
		MaxHeaderBytes: gateway.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	go func() { st.served <- st.http.Serve(st.ln) }()
	return st.waitReady(ctx)
}

// readyTimeout bounds Start's wait for the services to become ready.
const readyTimeout = 30 * time.Second

// waitReady waits until the producer and the gateway report ready (NATS
// connected, stream ensured by the producer and verified by the gateway),
// so the first request after Start succeeds.
func (st *Stack) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	readyz := "http://" + st.ln.Addr().String() + "/readyz"
	for {
		status := "unreachable"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			status = resp.Status
			if st.producer.Ready() && resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("services not ready (producer ready %v, gateway %s: %s): %w", st.producer.Ready(), readyz, status, ctx.Err())
		case <-tick.C:
		}
	}
}

// Addr is the address the HTTP listener is bound to.
func (st *Stack) Addr() net.Addr { return st.ln.Addr() }

// NATSURL is the embedded NATS server's client URL.
func (st *Stack) NATSURL() string { return st.nats.ClientURL() }

// Done delivers the error that ended serving: http.ErrServerClosed after
// Shutdown, another error when the listener failed.
func (st *Stack) Done() <-chan error { return st.served }

// Shutdown drains the gateway (every socket closed with 1001), finishes
// in-flight HTTP requests, closes the producer and shuts NATS down. When
// ctx ends first the rest is cut short.
func (st *Stack) Shutdown(ctx context.Context) error {
	err := st.gateway.Drain(ctx)
	if herr := st.http.Shutdown(ctx); herr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", herr))
		st.http.Close()
	}
	st.gateway = nil
	st.http = nil
	return errors.Join(err, st.close())
}

// close releases whatever Start got to.
func (st *Stack) close() error {
	var err error
	if st.http != nil {
		st.http.Close()
	} else if st.ln != nil {
		st.ln.Close()
	}
	if st.gateway != nil {
		err = errors.Join(err, st.gateway.Close())
	}
	if st.producer != nil {
		err = errors.Join(err, st.producer.Close())
	}
	if st.nats != nil {
		st.nats.Shutdown()
		st.nats.WaitForShutdown()
	}
	return err
}
