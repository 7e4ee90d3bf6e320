// Command producer runs framecast's ingest HTTP API (package producer).
// Every flag has a FRAMECAST_* environment variable, e.g. --nats-url and
// FRAMECAST_NATS_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/framecast/framecast/services/producer"
	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/envcheck"
	"github.com/framecast/framecast/shared/natsembed"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

// tokens is a flag that may repeat and takes comma-separated lists.
type tokens []string

func (t *tokens) String() string { return strings.Join(*t, ",") }

func (t *tokens) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*t = append(*t, s)
		}
	}
	return nil
}

// memoryOverhead is the Go memory limit's allowance, above the in-flight
// budget, for what every producer holds: its code, connections, metrics
// and the WEBP module.
const memoryOverhead = 256 << 20

func run(args []string) error {
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	var (
		cfg      producer.Config
		toks     tokens
		listen   = fs.String("listen", ":8081", "HTTP listen address")
		embedded = fs.Bool("embedded-nats", false, "start an embedded NATS server with JetStream on --nats-url's host:port")
		storeDir = fs.String("store-dir", "", "JetStream storage of the embedded NATS server (default: a new temporary directory)")
		level    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		readTO   = fs.Duration("read-timeout", producer.DefaultReadTimeout, "longest time to read one request, headers and body; a body still arriving then gets 408 body_timeout")
		idleTO   = fs.Duration("idle-timeout", producer.DefaultIdleTimeout, "how long an idle keep-alive connection stays open")
	)
	fs.StringVar(&cfg.NATSURL, "nats-url", producer.DefaultNATSURL, "NATS URL, comma-separated for a cluster")
	cfg.Stream.Flags(fs)
	fs.BoolVar(&cfg.EnsureStream, "ensure-stream", false, "create or update the stream and its bucket to the --stream-* flags instead of only verifying them (needs the admin user's rights; on with --embedded-nats)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", producer.DefaultMaxBodyBytes, "largest accepted request body in bytes")
	fs.Int64Var(&cfg.InlineLimit, "inline-limit", 0, "largest image sent inside its NATS message; larger ones go through the OUTPUTS_LARGE object store by reference (default 1 MiB, at most NATS max_payload - 64 KiB; -1 sends all inline)")
	fs.Int64Var(&cfg.MaxFrameBytes, "max-frame-bytes", publish.DefaultMaxFrame, "largest encoded image in bytes; larger ones get 413 frame_too_large")
	fs.Int64Var(&cfg.MaxInflightBytes, "max-inflight-bytes", producer.DefaultMaxInflightBytes, "memory budget of all requests in flight (bodies as they arrive, images being decoded or encoded); a request that cannot get its share within --overload-wait gets 503 overloaded")
	fs.IntVar(&cfg.MaxPixels, "max-pixels", producer.DefaultMaxPixels, "largest image in pixels (width × height) that is decoded or encoded; larger ones get 413 image_too_large")
	fs.DurationVar(&cfg.OverloadWait, "overload-wait", producer.DefaultOverloadWait, "how long a request waits for its share of --max-inflight-bytes before 503 overloaded")
	fs.Var(&toks, "token", "accepted bearer token; repeat or comma-separate; none disables auth")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("FRAMECAST")); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: allowed: debug, info, warn, error", *level)
	}
	if *readTO <= 0 || *idleTO <= 0 {
		return fmt.Errorf("--read-timeout %v, --idle-timeout %v: want positive durations", *readTO, *idleTO)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	cfg.Logger, cfg.Tokens = log, toks
	for _, v := range envcheck.Unknown(fs, "FRAMECAST", os.Environ()) {
		log.Warn("environment variable ignored: no producer setting has this name", v.Attrs()...)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.MaxInflightBytes > 0 {
		// The garbage of finished requests is collected before the heap
		// grows far past the budget, so the process stays near it.
		debug.SetMemoryLimit(cfg.MaxInflightBytes + memoryOverhead)
	}
	cfg.Registry = prometheus.NewRegistry()
	cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if len(toks) == 0 {
		log.Warn("no --token set: anyone who reaches the port can publish")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *embedded {
		u, err := url.Parse(strings.Split(cfg.NATSURL, ",")[0])
		if err != nil || u.Hostname() == "" {
			return fmt.Errorf("--nats-url %q: want nats://host:port", cfg.NATSURL)
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			port = 4222
		}
		ns, err := natsembed.Start(natsembed.Config{Name: "framecast-producer", Host: u.Hostname(), Port: port, StoreDir: *storeDir})
		if err != nil {
			return err
		}
		defer ns.WaitForShutdown()
		defer ns.Shutdown()
		log.Info("embedded nats started", "url", ns.ClientURL())
		// The producer owns this server: it applies the stream itself.
		cfg.EnsureStream = true
	}

	srv, err := producer.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: *readTO, IdleTimeout: *idleTO}
	log.Info("encoders", "backend", encode.Backend())
	fmt.Printf("producer listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
