package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/framecast/framecast/services/gateway/auth"
	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/services/gateway/zerocopy"
	"github.com/framecast/framecast/shared/stream"
)

// Server is one gateway. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	verifier *auth.Verifier
	nc       *nats.Conn
	ncClosed chan struct{} // closed when nc is closed for good
	js       jetstream.JetStream
	hub      *hub.Hub
	source   replay.Source
	handler  http.Handler
	admin    http.Handler
	limits   *limits
	// firstLookup merges the stream lookups of connections that arrive
	// before any lookup has succeeded (a storm at start, or while the
	// stream has no leader) into one at a time.
	firstLookup singleflight.Group
	ips         *clientIPs

	streamReady atomic.Bool
	draining    chan struct{} // closed when Drain starts
	drainAt     atomic.Uint64 // the hub's tip when Drain started
	drainOnce   sync.Once
	stop        context.CancelFunc // ends the stream-verifying loop and the watchdog
	bg          sync.WaitGroup     // the stream-verifying loop and the watchdog

	// streamProblem is why the stream is not ready: the last failed
	// verification, until one passes.
	streamProblem atomic.Pointer[string]

	mu       sync.Mutex
	sessions map[*session]struct{}
	wg       sync.WaitGroup // sessions
	writers  *writerPool
	// arena keeps large frames' messages for zero-copy sends; nil: every
	// frame is copied into each socket.
	arena *zerocopy.Arena
}

// New validates cfg, connects to NATS (retrying forever in the background,
// so it starts even while NATS is down), verifies the stream once NATS is
// reachable, and starts the hub. The gateway never creates or changes the
// stream: it is not ready until the stream matches cfg.Stream.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("gateway", cfg.ID),
		metrics:  newMetrics(cfg.Registry),
		draining: make(chan struct{}),
		ncClosed: make(chan struct{}),
		sessions: make(map[*session]struct{}),
		writers:  newWriterPool(),
	}
	if s.ips, err = newClientIPs(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	s.limits = newLimits(cfg)
	if len(cfg.JWTSecret) > 0 {
		if s.verifier, err = auth.NewVerifier(cfg.JWTSecret); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if cfg.AllowAnonymous {
		s.log.Warn("ANONYMOUS ACCESS ALLOWED: any client may watch every output as any client id; never run this in production")
	}
	s.nc, err = nats.Connect(cfg.NATSURL,
		nats.Name("framecast-gateway "+cfg.ID),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			s.log.Warn("reconnected to NATS; every ring heals with one stream read")
			if h := s.getHub(); h != nil {
				h.Reconnected()
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(s.ncClosed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.log.Warn("disconnected from NATS", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
				s.log.Warn("hub fell behind NATS on a subscription; its ring heals with one stream read", "subject", sub.Subject)
				if h := s.getHub(); h != nil {
					h.SlowConsumer(sub)
				}
				return
			}
			s.log.Warn("nats error", "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", cfg.NATSURL, err)
	}
	// Every JetStream API request the gateway makes is counted; pulls of
	// a consumer's messages are not API requests.
	trace := &jetstream.ClientTrace{RequestSent: func(string, []byte) { s.metrics.jsRequests.Inc() }}
	if s.js, err = jetstream.New(s.nc, jetstream.WithClientTrace(trace)); err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.source = replay.Source{JS: s.js, Stream: cfg.Stream.Name, Bucket: cfg.Stream.Bucket,
		ReplicaLag: func() { s.metrics.replicaWaits.Inc() }}
	h := hub.New(hub.Config{Conn: s.nc, Source: s.source, Budget: cfg.CacheBytes, Buffer: cfg.HubBuffer, Log: s.log, Stats: hub.Stats{
		Subscriptions: func(n int) { s.metrics.subscriptions.Set(float64(n)) },
		Hole:          func() { s.metrics.holes.Inc() },
		Read:          func(int) { s.metrics.reads.Inc() },
		Late:          func() { s.metrics.late.Inc() },
	}})
	s.mu.Lock()
	s.hub = h
	s.mu.Unlock()
	if !cfg.CopyFrames {
		if s.arena, err = zerocopy.New(); err != nil {
			s.log.Info("large frames are copied into each socket", "reason", err)
		} else {
			s.metrics.observeArena(cfg.Registry, s.arena)
		}
	}
	s.metrics.observeHub(cfg.Registry, h)
	bgctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	s.bg.Add(2)
	go s.verifyStream(bgctx)
	go s.watch(bgctx)
	s.handler, s.admin = s.routes()
	return s, nil
}

// StreamLookup is how often the gateway looks the stream up in the
// background (its epoch, first and last sequences). Once one lookup has
// succeeded, a live-only connection costs none on an output already
// watched: it uses the last one and the live frames' sequences (a ring
// created for it makes one, after its subscription). Before, connections
// share one lookup at a time (Server.firstLookup).
const StreamLookup = 30 * time.Second

// verifyStream checks that the stream and its bucket exist with the
// config's settings (stream.Verify), retrying until they do or ctx ends;
// until then the gateway is not ready and /readyz says what is missing or
// differs (field, want, have). An administrative identity applies the
// settings (framecast stream ensure), never the gateway.
//
// Then it looks the stream up every StreamLookup. A later change of the
// settings is logged at each lookup, but the gateway stays ready: an
// ensure run with new settings ahead of the gateways' restart with the
// same ones must not take every gateway out of service at once. A missing
// stream makes /readyz fail at any time.
func (s *Server) verifyStream(ctx context.Context) {
	defer s.bg.Done()
	wait := 200 * time.Millisecond
	var last string
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := stream.Verify(actx, s.js, s.cfg.Stream)
		cancel()
		if err == nil {
			s.hub.Observe(st) // the verify's lookup is the hub's first
		}
		if err == nil {
			s.streamProblem.Store(nil)
			s.streamReady.Store(true)
			s.log.Info("stream verified", "stream", s.cfg.Stream.Name)
			break
		}
		problem := err.Error()
		s.streamProblem.Store(&problem)
		if problem != last {
			s.log.Warn("stream not ready; verifying again until it is", "stream", s.cfg.Stream.Name, "err", err, "retry_in", wait)
			last = problem
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	t := time.NewTicker(StreamLookup)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// One verify is also the periodic lookup; a mismatch returns no
		// stream, so the lookup is made on its own then.
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := stream.Verify(vctx, s.js, s.cfg.Stream)
		cancel()
		if err == nil {
			s.hub.Observe(st)
			continue
		}
		if errors.Is(err, stream.ErrMismatch) {
			s.log.Warn("stream settings changed since the gateway started; it keeps serving, restart it with the stream's settings", "stream", s.cfg.Stream.Name, "err", err)
		}
		if _, err := s.refreshStream(ctx); err != nil {
			s.log.Warn("stream lookup failed", "err", err)
		}
	}
}

// watch stops every connection whose write has made no progress for the
// write timeout (a client that stopped reading): its writer closes it with
// 4008 and the sequence to resume from once the write ends; if the write
// makes no progress for another write timeout, the connection is cut. It
// checks four times per timeout, until ctx ends.
func (s *Server) watch(ctx context.Context) {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.WriteTimeout / 4)
	defer t.Stop()
	var stalled []*session
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-s.cfg.WriteTimeout).UnixNano()
		s.mu.Lock()
		for ss := range s.sessions {
			if ss.stalled(cutoff) {
				stalled = append(stalled, ss)
			}
		}
		s.mu.Unlock()
		for _, ss := range stalled {
			if ss.stop() {
				s.metrics.writeStalls.Inc()
				ss.log.Info("a write made no progress; closing with 4008 after it", "timeout", s.cfg.WriteTimeout)
				continue
			}
			ss.log.Info("cutting connection: its write made no progress, twice", "timeout", s.cfg.WriteTimeout)
			ss.cut()
		}
		clear(stalled)
		stalled = stalled[:0]
	}
}

// refreshStream looks the stream up now.
func (s *Server) refreshStream(ctx context.Context) (hub.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	in, err := s.hub.Refresh(ctx)
	if err != nil {
		return in, fmt.Errorf("%w: %v", errStream, err)
	}
	return in, nil
}

// Handler serves the websocket endpoints, /healthz, /readyz, /metrics
// (unless Config.SeparateAdmin) and, with Config.Viewer, the web viewer.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves /metrics, /healthz and /readyz, for a listener of
// its own.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// HTTPServer returns an http.Server for h (Handler or AdminHandler) on
// addr, with the read and idle timeouts of the Config, HTTPWriteTimeout
// and MaxHeaderBytes. net/http clears a connection's deadlines when the
// websocket library takes it over, so none of them bounds a websocket.
func (s *Server) HTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: s.cfg.HTTPReadTimeout,
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		WriteTimeout:      HTTPWriteTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

func (s *Server) routes() (client, admin http.Handler) {
	metrics := promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
	health := func(mux *http.ServeMux) {
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("ok\n"))
		})
		mux.HandleFunc("GET /readyz", s.serveReady)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", s.serveNative)
	mux.HandleFunc("GET /comfyui-deploy/ws", s.serveComfy)
	health(mux)
	if !s.cfg.SeparateAdmin {
		mux.Handle("GET /metrics", metrics)
	}
	if s.cfg.Viewer {
		mountViewer(mux)
	}
	amux := http.NewServeMux()
	health(amux)
	amux.Handle("GET /metrics", metrics)
	return mux, amux
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	var problem string
	switch {
	case s.isDraining():
		problem = "draining"
	case !s.nc.IsConnected():
		problem = "not connected to NATS"
	case !s.streamReady.Load():
		problem = "stream " + s.cfg.Stream.Name + " not verified yet"
		if p := s.streamProblem.Load(); p != nil {
			problem = "stream " + s.cfg.Stream.Name + " not ready: " + *p
		}
	default:
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := s.js.Stream(ctx, s.cfg.Stream.Name); err != nil {
			problem = "stream " + s.cfg.Stream.Name + ": " + err.Error()
		}
	}
	if problem != "" {
		writeError(w, http.StatusServiceUnavailable, "not_ready", problem)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ready\n"))
}

// Subscriptions is the number of NATS subscriptions the hub holds.
func (s *Server) Subscriptions() int { return s.hub.Subscriptions() }

// Connections is the number of open websocket connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

// add registers a session; it fails once draining started.
func (s *Server) add(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isDraining() {
		return false
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) remove(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	ss.lease.release()
	s.wg.Done()
}

// Drain stops accepting sockets (new upgrades get 503), closes every
// connection with 1001 after flushing what is queued for it, and drains
// the NATS connection. When ctx ends first, the remaining sockets are cut
// and Drain returns ctx's error after cleaning up.
func (s *Server) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() {
		s.drainAt.Store(s.hub.Tip())
		s.mu.Lock()
		close(s.draining)
		for ss := range s.sessions {
			ss.wake() // idle sessions have no writer to see the drain
		}
		s.mu.Unlock()
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.closeAll()
		<-done
	}
	s.stop()
	s.bg.Wait()
	s.hub.Close()
	if derr := s.nc.Drain(); derr != nil {
		s.nc.Close()
	} else {
		select {
		case <-s.ncClosed:
		case <-ctx.Done():
			s.nc.Close()
			err = ctx.Err()
		}
	}
	return err
}

// getHub returns the hub; NATS callbacks may run before New has made it.
func (s *Server) getHub() *hub.Hub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hub
}

// Close cuts every connection at once and closes NATS.
func (s *Server) Close() error {
	s.drainOnce.Do(func() {
		s.mu.Lock()
		close(s.draining)
		s.mu.Unlock()
	})
	s.closeAll()
	s.wg.Wait()
	s.writers.close()
	s.stop()
	s.bg.Wait()
	s.hub.Close()
	s.nc.Close()
	if s.arena != nil {
		_ = s.arena.Close()
	}
	return nil
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		ss.cut()
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}
