package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/stream"
)

// Server is the producer service. Its handler is safe for concurrent use.
// It owns one goroutine, which verifies the stream (or, with
// Config.EnsureStream, ensures it) after every NATS
// (re)connect; Close ends it.
type Server struct {
	cfg        Config
	log        *slog.Logger
	nc         *nats.Conn
	js         jetstream.JetStream
	pub        *publish.Publisher
	metrics    *metrics
	budget     *budget // memory of requests in flight
	handler    http.Handler
	retryAfter int // seconds

	streamOK atomic.Bool // the stream was verified (or ensured) on the current connection
	// streamProblem is why the stream is not ready: the last failed
	// verification or ensure, until one passes.
	streamProblem atomic.Pointer[string]
	wake          chan struct{} // (re)connected: verify the stream
	closed        chan struct{} // NATS connection closed
	stop          context.CancelFunc
	done          chan struct{} // stream loop ended
	once          sync.Once
}

// New validates cfg, fills its defaults and connects to NATS. It returns
// even when NATS is unreachable: the connection retries forever, and the
// stream is verified (or ensured) in the background once it is up. ctx
// bounds only New.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		retryAfter: int(math.Ceil(cfg.RetryAfter.Seconds())),
		budget:     newBudget(cfg.MaxInflightBytes),
		wake:       make(chan struct{}, 1),
		closed:     make(chan struct{}),
		done:       make(chan struct{}),
	}
	s.nc, err = nats.Connect(cfg.NATSURL,
		nats.Name("framecast-producer"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(cfg.ReconnectWait),
		// No reconnect buffer: a publish while disconnected fails at once,
		// so the API can say exactly which frames were stored.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			s.log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
			s.kick()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			s.streamOK.Store(false)
			s.kick()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.streamOK.Store(false)
			if err != nil {
				s.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closed) }),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: connect nats: %w", ErrInvalidConfig, err)
	}
	s.js, err = jetstream.New(s.nc)
	if err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// Registered only now: a registry shared with running services may
	// read the ready gauge, and so s.nc, as soon as it is registered.
	s.metrics, err = newMetrics(cfg.Registry, func() float64 {
		if s.Ready() {
			return 1
		}
		return 0
	}, func() float64 { return float64(s.budget.inUse()) })
	if err != nil {
		s.nc.Close()
		return nil, err
	}
	s.pub = publish.New(s.js, publish.Options{Timeout: cfg.PublishTimeout,
		InlineLimit: cfg.InlineLimit, MaxFrame: cfg.MaxFrameBytes, Bucket: cfg.Stream.Bucket})
	s.handler = s.routes()

	loopCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.streamLoop(loopCtx)
	return s, nil
}

// Handler serves the API, /healthz, /readyz and /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// Publisher is the server's publisher, for in-process callers that want
// the same connection without HTTP.
func (s *Server) Publisher() *publish.Publisher { return s.pub }

// Ready reports whether NATS is connected and the stream was verified
// (or ensured) on
// this connection.
func (s *Server) Ready() bool { return s.nc.IsConnected() && s.streamOK.Load() }

// Close stops the background work and drains the NATS connection, waiting
// up to 10 s for the drain. Calls after the first return nil.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.stop()
		<-s.done
		if derr := s.nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionReconnecting) && !errors.Is(derr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("drain nats: %w", derr)
			s.nc.Close()
		}
		select {
		case <-s.closed:
		case <-time.After(10 * time.Second):
			s.nc.Close()
			err = errors.Join(err, errors.New("drain nats: not done after 10s"))
		}
	})
	return err
}

func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// streamLoop verifies the stream after every (re)connect, retrying with
// backoff while connected until it matches the config; with
// Config.EnsureStream it creates or updates it instead. It ends when ctx
// is done. Until it succeeds the server is not ready and /readyz says
// what is missing or differs.
func (s *Server) streamLoop(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		backoff := 100 * time.Millisecond
		for s.nc.IsConnected() {
			ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
			what := "verified"
			check := stream.Verify
			if s.cfg.EnsureStream {
				what, check = "ensured", stream.Ensure
			}
			_, err := check(ectx, s.js, s.cfg.Stream)
			cancel()
			if err == nil {
				s.streamProblem.Store(nil)
				s.streamOK.Store(true)
				s.log.Info("stream "+what, "stream", s.cfg.Stream.Name)
				break
			}
			problem := err.Error()
			if p := s.streamProblem.Swap(&problem); p == nil || *p != problem {
				s.log.Warn("stream not ready; trying again until it is", "stream", s.cfg.Stream.Name, "ensure", s.cfg.EnsureStream, "err", err, "retry_in", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.nc.IsConnected() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "nats " + s.nc.Status().String()})
			return
		}
		if !s.streamOK.Load() {
			status := "stream " + s.cfg.Stream.Name + " not verified yet"
			if p := s.streamProblem.Load(); p != nil {
				status = "stream " + s.cfg.Stream.Name + " not ready: " + *p
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": status})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, errorf(http.StatusNotFound, CodeNotFound, "no route for %s %s; the API is POST /v1/outputs/{output_id}/images and POST /v1/events, plus GET /healthz, /readyz, /metrics", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		var serve http.HandlerFunc
		switch {
		case strings.HasPrefix(p, outputsPrefix):
			serve = s.serveImages
		case p == eventsPath:
			serve = s.serveEvents
		default:
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		serve(rec, r)
		s.metrics.requests.WithLabelValues(fmt.Sprint(rec.status)).Inc()
	})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
