// Command gateway runs a framecast edge gateway: websocket clients watch
// outputs here, fed from NATS JetStream.
//
// Every flag can also be set as a FRAMECAST_* environment variable, e.g.
// --nats-url as FRAMECAST_NATS_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/framecast/framecast/services/gateway"
	"github.com/framecast/framecast/shared/envcheck"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var (
		cfg          gateway.Config
		listen       = fs.String("listen", ":8080", "HTTP listen address")
		adminAddr    = fs.String("admin-addr", "", "listen address of /metrics, /healthz and /readyz; when set, /metrics is not served on --listen")
		proxies      = fs.String("trusted-proxies", "", "comma-separated addresses and CIDR ranges of reverse proxies whose X-Forwarded-For names the client address (e.g. 10.0.0.0/8); empty: the peer's address counts")
		secret       = fs.String("jwt-secret", "", "HS256 secret of client tokens")
		secretFile   = fs.String("jwt-secret-file", "", "file holding the HS256 secret (trailing newline ignored)")
		origins      = fs.String("allowed-origins", "", "comma-separated Origin host patterns allowed besides same-origin, e.g. app.example.com,*.example.com")
		drainTimeout = fs.Duration("drain-timeout", 10*time.Second, "bound on the graceful drain at SIGTERM")
		logLevel     = fs.String("log-level", "info", "debug, info, warn or error")
		gcPercent    = fs.Int("gc-percent", 0, "how far, in percent of the live heap, the heap may grow before the garbage collector runs; 0: Go's GOGC (default 100). 50 holds about a sixth less memory per idle connection for some 8% more CPU per GB fanned out (BENCHMARKS.md)")
	)
	fs.StringVar(&cfg.NATSURL, "nats-url", gateway.DefaultNATSURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&cfg.ID, "id", "", "gateway id in hello messages and logs (default: host name)")
	fs.BoolVar(&cfg.AllowAnonymous, "allow-anonymous", false, "allow clients without a token (development only: anyone reads everything)")
	fs.Int64Var(&cfg.CacheBytes, "cache-bytes", gateway.DefaultCacheBytes, "bytes of frames the gateway keeps in memory for all connections; past it the least recently used outputs lose their oldest frames")
	fs.StringVar(&cfg.ComfyTokenParam, "comfy-token-param", "token", "query parameter the ComfyDeploy endpoint reads a JWT from besides the Authorization header; another name when the apps' URLs carry a token= of their own, \"-\" for the header only")
	fs.BoolVar(&cfg.CopyFrames, "copy-frames", false, "write every frame into each socket instead of handing large frames' pages to the kernel once (sendfile from a memory file)")
	fs.IntVar(&cfg.HubBuffer, "hub-buffer", gateway.DefaultHubBuffer, "messages NATS may queue for the gateway's dispatcher; past it a subscription drops live frames, healed by a stream read (a small value forces such drops, for tests)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", gateway.DefaultWriteTimeout, "bound on one websocket write")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", gateway.DefaultPingInterval, "websocket keepalive ping period")
	fs.IntVar(&cfg.MaxConns, "max-conns", gateway.DefaultMaxConns, "most websocket connections of this gateway (503 gateway_full past it); -1: no bound")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 0, "most connections of one client address (429 ip_connection_limit past it); 0: no bound (behind a proxy, set --trusted-proxies too)")
	fs.IntVar(&cfg.MaxConnsPerSub, "max-conns-per-sub", gateway.DefaultMaxConnsPerSub, "most connections of one token sub (429 sub_connection_limit past it); -1: no bound")
	fs.IntVar(&cfg.MaxResumesPerIP, "max-resumes-per-ip", 0, "most connections of one client address resuming (since, last) and not caught up yet (429 ip_resume_limit past it); 0: no bound")
	fs.DurationVar(&cfg.HTTPReadTimeout, "http-read-timeout", gateway.DefaultHTTPReadTimeout, "bound on reading a request's headers; ends at the websocket upgrade")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", gateway.DefaultHTTPIdleTimeout, "an idle keep-alive HTTP connection closes after this long (websockets are not affected)")
	fs.BoolVar(&cfg.Viewer, "viewer", false, "serve the web viewer at / and the JS client at /framecast.js")
	cfg.Stream.Flags(fs)
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("FRAMECAST")); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	switch {
	case *gcPercent < 0:
		return fmt.Errorf("--gc-percent %d: want 0 (Go's GOGC) or a positive percentage", *gcPercent)
	case *gcPercent > 0:
		debug.SetGCPercent(*gcPercent)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	for _, v := range envcheck.Unknown(fs, "FRAMECAST", os.Environ()) {
		log.Warn("environment variable ignored: no gateway setting has this name", v.Attrs()...)
	}
	cfg.Registry = prometheus.NewRegistry()
	cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	switch {
	case *secret != "" && *secretFile != "":
		return errors.New("set --jwt-secret or --jwt-secret-file, not both")
	case *secretFile != "":
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("--jwt-secret-file: %w", err)
		}
		cfg.JWTSecret = []byte(strings.TrimRight(string(b), "\r\n"))
	case *secret != "":
		cfg.JWTSecret = []byte(*secret)
	}
	cfg.AllowedOrigins = list(*origins)
	cfg.TrustedProxies = list(*proxies)
	cfg.SeparateAdmin = *adminAddr != ""

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := gateway.New(ctx, cfg)
	if err != nil {
		return err
	}
	hs := srv.HTTPServer(*listen, srv.Handler())
	errc := make(chan error, 2)
	go func() { errc <- hs.ListenAndServe() }()
	log.Info("gateway listening", "addr", *listen, "nats", cfg.NATSURL)
	var as *http.Server
	if *adminAddr != "" {
		as = srv.HTTPServer(*adminAddr, srv.AdminHandler())
		go func() { errc <- as.ListenAndServe() }()
		log.Info("admin listening", "addr", *adminAddr)
	}
	select {
	case err := <-errc:
		_ = srv.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", *drainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), *drainTimeout)
	defer cancel()
	// Hijacked websockets are not the http.Server's: Drain closes them
	// while Shutdown stops the listener.
	derr := make(chan error, 1)
	go func() { derr <- srv.Drain(dctx) }()
	if err := hs.Shutdown(dctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if as != nil {
		// The admin listener answers /readyz (503 draining) and the
		// metrics until the drain ends.
		defer as.Close()
	}
	if err := <-derr; err != nil {
		log.Warn("drain cut short", "err", err)
	}
	log.Info("stopped")
	return nil
}

// list splits a comma-separated flag value, dropping blanks.
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
