package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/shared/wire"
)

// Why a session stopped writing.
var (
	errWrite    = errors.New("write to client failed")
	errDraining = errors.New("gateway draining")
	errExpired  = errors.New("token expired")
	// errStalled: a write made no progress for the write timeout.
	errStalled = errors.New("client stalled")
	// errStream: the stream reads the connection waits for kept failing.
	errStream = errors.New("stream unavailable")
)

// session is one websocket connection: a cursor in the gateway's rings
// (hub.Cursor), run by up to two goroutines.
//
// The reader reads (and discards) client messages, which keeps the library
// answering pings and close frames. It owns the session: when the
// connection fails or is closed, it stops the writer and cleans up.
//
// The writer runs only while there is work: the start (hello), frames the
// cursor has not sent, a due ping, or a close. Wake (from the hub, when a
// ring the parked cursor follows changes) and the timers start it on one
// of the server's writer goroutines (writerPool), and it returns once
// idle, so an idle connection holds one goroutine, its reader. Frames are
// never copied per connection: the writer sends each ring entry's shared
// wire bytes (from 16 KiB, its pages: zerocopy) at the client's pace, so
// a slow client lags in the ring instead of filling a queue.
type session struct {
	srv     *Server
	ws      *websocket.Conn
	conn    net.Conn // under ws: closing it cuts the connection at once
	wc      *watchedConn
	in      *clientConn // what the library reads
	req     *request
	lease   *lease // the connection's hold on the server's limits
	log     *slog.Logger
	frames  prometheus.Counter
	bytes   prometheus.Counter
	pinger  *time.Timer
	expirer *time.Timer // nil without a token expiry
	writers sync.WaitGroup
	// ctx ends when the session is cut or ends; fetches of large frames
	// run under it.
	ctx    context.Context
	cancel context.CancelFunc

	// The writer's own: writer runs are ordered by mu.
	started  bool
	cursor   *hub.Cursor
	resuming bool // native resume: the live marker is still to be sent
	// stall is when the running write last made progress (unix
	// nanoseconds; 0: no write runs). The server's watchdog cuts a
	// connection whose write made none for WriteTimeout.
	stall atomic.Int64
	// stopAt is when the watchdog found a write stalled (unix
	// nanoseconds; 0: never): the writer closes with 4008 once the write
	// ends, and the watchdog cuts the connection if it makes no progress
	// for another WriteTimeout.
	stopAt atomic.Int64

	mu      sync.Mutex
	running bool // a writer goroutine runs
	ended   bool // the session ended: no writer starts any more
	woken   bool // a ring changed since the writer last looked
	pingDue bool
	expired bool
	last    uint64 // the highest sequence written, for close reasons
}

func newSession(srv *Server, ws *websocket.Conn, wc *watchedConn, in *clientConn, req *request) *session {
	s := &session{
		srv: srv, ws: ws, conn: wc.Conn, wc: wc, in: in, req: req,
		log:    slog.New(sessionLog{srv.log.Handler(), req}),
		frames: srv.metrics.frames.WithLabelValues(req.endpoint),
		bytes:  srv.metrics.bytes.WithLabelValues(req.endpoint),
	}
	// Before the session is registered: cut may run from then on.
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if req.since != nil {
		s.last = *req.since // the resume point a close names until more is sent
	}
	return s
}

// sessionLog adds a session's endpoint and ids to the records it logs
// when they are logged, instead of formatting them for every session up
// front as slog.Logger.With does.
type sessionLog struct {
	slog.Handler
	req *request
}

func (h sessionLog) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("endpoint", h.req.endpoint), slog.String("output_id", h.req.outputID),
		slog.String("client_id", h.req.clientID))
	return h.Handler.Handle(ctx, r)
}

func (h sessionLog) WithAttrs(as []slog.Attr) slog.Handler {
	return sessionLog{h.Handler.WithAttrs(as), h.req}
}

func (h sessionLog) WithGroup(name string) slog.Handler {
	return sessionLog{h.Handler.WithGroup(name), h.req}
}

func (s *session) comfy() bool { return s.req.endpoint == endpointComfy }

// signal starts the writer unless it runs or the session ended. It needs
// s.mu.
func (s *session) signal() {
	if s.running || s.ended {
		return
	}
	s.running = true
	s.writers.Add(1)
	s.srv.writers.run(s)
}

// Wake is the cursor's hub.Waker: a ring it waits on changed.
func (s *session) Wake() {
	s.mu.Lock()
	s.woken = true
	s.signal()
	s.mu.Unlock()
}

// wake starts the writer to look at the session's state again (drain).
func (s *session) wake() {
	s.mu.Lock()
	s.signal()
	s.mu.Unlock()
}

// cut closes the connection at once; the writer's write fails and the
// reader then ends the session.
func (s *session) cut() {
	s.cancel()
	_ = s.conn.Close()
}

// begin starts the reader, the timers and the writer (which starts the
// session). It returns at once; the reader ends the session.
func (s *session) begin() {
	s.srv.metrics.connections.WithLabelValues(s.req.endpoint).Inc()
	if s.comfy() {
		s.ws.SetReadLimit(ComfyReadLimit)
	} else {
		s.ws.SetReadLimit(NativeReadLimit)
	}
	s.mu.Lock()
	// The first ping comes after half to all of the interval, so that
	// connections opened together do not all ping together.
	every := s.srv.cfg.PingInterval
	s.pinger = time.AfterFunc(every-rand.N(every/2+1), s.pingTick)
	if !s.req.expiry.IsZero() {
		s.expirer = time.AfterFunc(time.Until(s.req.expiry), s.expire)
	}
	s.signal()
	s.mu.Unlock()
	go s.read()
}

func (s *session) pingTick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.pingDue = true
	s.pinger.Reset(s.srv.cfg.PingInterval)
	s.signal()
}

func (s *session) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired = true
	s.signal()
}

// read discards client messages as they stream in, holding none of them,
// until the connection fails, then ends the session. A message over the
// endpoint's read limit makes the library close with 1009. It reads
// without a context: cut closes the connection instead, so no per-read
// context registration is held while idle.
//
// An idle connection's one goroutine is its reader, so it waits for the
// client's bytes outside the websocket library (see clientConn), whose
// reads need a stack of 4 KiB where the wait needs less than 2 KiB. Once
// a goroutine's stack has grown the runtime keeps it, so the reader does
// not park on the goroutine that read: it starts a fresh one to park.
func (s *session) read() {
	for {
		s.in.awaitReadable()
		_, r, err := s.ws.Reader(context.Background())
		if err != nil {
			break
		}
		n, err := io.Copy(io.Discard, r)
		if n > 0 { // not the empty message after each pong (clientConn)
			s.srv.metrics.clientBytes.WithLabelValues(s.req.endpoint).Add(float64(n))
		}
		if err != nil {
			break
		}
		if !s.in.ready() {
			go s.read() // parks with a small stack
			return
		}
	}
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.cancel()
	_ = s.conn.Close() // a writer blocked on a slow client ends now
	s.writers.Wait()
	s.pinger.Stop()
	if s.expirer != nil {
		s.expirer.Stop()
	}
	if s.cursor != nil {
		s.srv.hub.Leave(s.cursor)
	}
	_ = s.ws.CloseNow()
	s.srv.metrics.connections.WithLabelValues(s.req.endpoint).Dec()
	s.srv.remove(s)
}

// writeLoop is one run of the writer, on a writerPool goroutine. When the
// session fails or must close, it closes the connection with the code the
// cause calls for.
func (s *session) writeLoop() {
	defer s.writers.Done()
	err := s.loop()
	if err == nil {
		return // parked; Wake or a timer starts a new writer
	}
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.in.outside.Lock() // the close handshake reads the client's frames
	s.finish(err)
	s.in.outside.Unlock()
	s.cancel()
	_ = s.ws.CloseNow()
}

// start joins the rings at the resume point and sends the first message.
func (s *session) start() error {
	since, reset, err := s.resumePoint()
	if err != nil {
		return err
	}
	// Not under s.ctx: a context derived from it would leave s.ctx a
	// map of children for the connection's life (see idleContext).
	jctx, cancel := idleContext(s.srv.cfg.WriteTimeout)
	s.cursor, err = s.srv.hub.Join(jctx, s, s.req.watches, since)
	cancel()
	if err != nil {
		return fmt.Errorf("join live subjects: %w", err)
	}
	pos := s.cursor.Position()
	s.mu.Lock()
	s.last = pos // after a reset, below the client's since
	s.mu.Unlock()
	_, epoch := s.srv.hub.Epoch()
	if s.comfy() {
		if err := s.write(true, wire.Status(s.req.clientID)); err != nil {
			return err
		}
	} else {
		hello := wire.Control{Type: wire.TypeHello, Gateway: s.srv.cfg.ID,
			OutputID: s.req.outputID, ClientID: s.req.clientID, Since: &pos, Epoch: epoch}
		if err := s.write(true, wire.EncodeControl(hello)); err != nil {
			return err
		}
		if reset != "" {
			if err := s.write(true, wire.EncodeControl(wire.Control{Type: wire.TypeReset, Epoch: epoch, Since: &pos, Message: reset})); err != nil {
				return err
			}
		}
	}
	if since != nil {
		s.resuming = !s.comfy()
		from := "memory"
		if !s.cursor.InMemory() {
			from = "stream"
		}
		s.srv.metrics.resumes.WithLabelValues(from).Inc()
	}
	return nil
}

// resumePoint returns the sequence the connection starts after (nil:
// live only) and, when the client's resume point names no position in
// the stream as it is now, why it was reset.
func (s *session) resumePoint() (*uint64, string, error) {
	h := s.srv.hub
	switch {
	case s.req.since != nil:
		since := *s.req.since
		info := h.Info()
		if s.req.epoch != "" && s.req.epoch != info.Epoch || since > h.Tip() {
			// Look again before telling the client its position is gone
			// (this gateway's last lookup may be older than the client's
			// sequence), retrying while the stream has no leader.
			err := s.retry(func() (err error) {
				info, err = s.srv.refreshStream(s.ctx)
				return err
			})
			if err != nil {
				return nil, "", err
			}
		}
		switch {
		case s.req.epoch != "" && s.req.epoch != info.Epoch:
			p := info.First - min(info.First, 1)
			return &p, fmt.Sprintf("epoch %s is not the stream's (%s): it was created again; frames of the new stream follow from its start", s.req.epoch, info.Epoch), nil
		case since > h.Tip():
			p := info.First - min(info.First, 1)
			return &p, fmt.Sprintf("since %d is past the stream's last sequence %d (the stream was created again, or the sequence is another stream's); frames follow from the stream's start", since, h.Tip()), nil
		}
		return &since, "", nil
	case s.req.last > 0:
		var n uint64
		err := s.retry(func() (err error) {
			if n, err = s.srv.source.SinceForLast(s.ctx, s.req.filters, s.req.last, s.req.renditions); err != nil {
				err = fmt.Errorf("%w: find last %d frames: %v", errStream, s.req.last, err)
			}
			return err
		})
		if err != nil {
			return nil, "", err
		}
		return &n, "", nil
	}
	return nil, "", nil
}

// retry runs a stream request until it succeeds, retrying with backoff
// for up to hub.StreamRetry (a leader election, a NATS reconnect); then it
// returns the last error (errStream: the client is closed with 4008 and
// its resume point).
func (s *session) retry(request func() error) error {
	wait := 100 * time.Millisecond
	deadline := time.Now().Add(hub.StreamRetry)
	for {
		err := request()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		s.log.Debug("stream request failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// loop starts the session on the writer's first run, then sends what the
// cursor has and pings until there is nothing to do: it then clears
// s.running and returns nil. It returns the cause when the session must
// end: drain, token expiry, a failed connection or stream.
func (s *session) loop() error {
	if !s.started {
		s.started = true
		if err := s.start(); err != nil {
			return err
		}
	}
	for {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if s.stopAt.Load() != 0 {
			return errStalled
		}
		s.mu.Lock()
		if s.expired {
			s.mu.Unlock()
			return errExpired
		}
		s.woken = false
		s.mu.Unlock()
		n := s.cursor.Next()
		if n.Kind != hub.Wait && s.srv.isDraining() && n.Frame != nil && n.Frame.Seq > s.srv.drainAt.Load() {
			return errDraining // what arrived before the drain is sent; the rest is for the next gateway
		}
		if n.Kind == hub.Wait {
			if done, err := s.idle(n); done || err != nil {
				return err
			}
			continue
		}
		if err := s.send(n); err != nil {
			return err
		}
	}
}

// idle handles a cursor with nothing to send: the live marker, drain,
// a due ping, or parking. It reports done when the writer parked.
func (s *session) idle(n hub.Next) (bool, error) {
	if !n.Reading {
		s.lease.endResume() // a resume has caught up
	}
	if s.resuming && !n.Reading {
		s.resuming = false
		seq := s.cursor.Position()
		return false, s.write(true, wire.EncodeControl(wire.Control{Type: wire.TypeLive, Seq: &seq}))
	}
	if s.srv.isDraining() {
		return true, errDraining
	}
	s.mu.Lock()
	ping := s.pingDue
	s.pingDue = false
	s.mu.Unlock()
	if ping {
		return false, s.ping()
	}
	s.cursor.Park()
	if n = s.cursor.Next(); n.Kind != hub.Wait {
		s.cursor.Unpark()
		return false, s.send(n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.woken || s.pingDue || s.expired || s.srv.isDraining() {
		return false, nil
	}
	s.running = false
	return true, nil
}

// send writes what Next found.
func (s *session) send(n hub.Next) error {
	switch n.Kind {
	case hub.Send:
		if err := s.writeFrame(n.Frame); err != nil {
			return err
		}
		s.setLast(n.Frame.Seq)
	case hub.Gap:
		return s.gap(n.From, n.To)
	case hub.Reset:
		s.srv.metrics.resets.Inc()
		s.mu.Lock()
		s.last = 0 // sequences restart in the new epoch
		s.mu.Unlock()
		if s.comfy() {
			return nil
		}
		_, epoch := s.srv.hub.Epoch()
		var zero uint64
		return s.write(true, wire.EncodeControl(wire.Control{Type: wire.TypeReset, Epoch: epoch, Since: &zero,
			Message: "the stream was created again; frames of the new stream follow from its start"}))
	case hub.Behind:
		return fmt.Errorf("%w: reads of the frames after seq %d have failed for %v", errStream, s.cursor.Position(), hub.StreamRetry)
	}
	return nil
}

func (s *session) setLast(seq uint64) {
	s.mu.Lock()
	s.last = max(s.last, seq)
	s.mu.Unlock()
}

// idleContext is a timeout for a step every connection takes (its join,
// its pings) that is not derived from the session's context: the first
// context derived from a cancelable one allocates it a map of children
// and a done channel that it keeps for good, some 400 bytes on every idle
// connection. Such a step ends when the session does anyway: a ping when
// the socket closes, a join within its timeout.
func idleContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

func (s *session) ping() error {
	ctx, cancel := idleContext(s.srv.cfg.WriteTimeout)
	err := s.ws.Ping(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: ping: %v", errWrite, err)
	}
	s.srv.metrics.pings.Inc()
	return nil
}

// gap reports lost sequences from..to: a gap message on the native
// endpoint; ComfyDeploy clients have no such message and skip them.
func (s *session) gap(from, to uint64) error {
	s.srv.metrics.gaps.Inc()
	s.setLast(to)
	if s.comfy() {
		return nil
	}
	return s.write(true, wire.EncodeControl(wire.Control{Type: wire.TypeGap, From: from, To: to}))
}

// progress records that the connection took bytes, for the watchdog.
func (s *session) progress() {
	if s.stall.Load() != 0 {
		s.stall.Store(time.Now().UnixNano())
	}
}

// stalled reports whether a write has made no progress since before
// cutoff (unix nanoseconds), nor been stopped since.
func (s *session) stalled(cutoff int64) bool {
	t := s.stall.Load()
	return t != 0 && t < cutoff && s.stopAt.Load() < cutoff
}

// stop asks the writer to close with 4008 once its stalled write ends;
// it reports false when it was asked already.
func (s *session) stop() bool {
	if !s.stopAt.CompareAndSwap(0, time.Now().UnixNano()) {
		return false
	}
	s.wake() // a writer that ended its write and parked meanwhile
	return true
}

// write sends one message. A write that makes no progress for the write
// timeout is stopped by the server's watchdog (Server.watch), which costs
// a write no timer, deadline or context: a slow client that keeps taking
// bytes receives even a large frame, and one that stalls is closed with
// 4008 after the message, or cut if it stays stalled.
func (s *session) write(text bool, data []byte) error {
	typ := websocket.MessageBinary
	if text {
		typ = websocket.MessageText
	}
	s.stall.Store(time.Now().UnixNano())
	s.wc.hold()
	err := s.ws.Write(context.Background(), typ, data)
	if ferr := s.wc.flush(); err == nil {
		err = ferr
	}
	s.stall.Store(0)
	if err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	if !text {
		s.frames.Inc()
		s.bytes.Add(float64(len(data)))
	}
	return nil
}

// finish closes the socket with the code err calls for.
func (s *session) finish(err error) {
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	s.stall.Store(time.Now().UnixNano()) // the close handshake's writes are watched too
	defer s.stall.Store(0)
	switch {
	case errors.Is(err, errDraining):
		_ = s.ws.Close(websocket.StatusCode(wire.CloseGoingAway),
			fmt.Sprintf("gateway draining; reconnect with since=<last seq received> (about %d)", last))
	case errors.Is(err, errExpired):
		s.srv.metrics.authFailures.WithLabelValues("expired_in_session").Inc()
		_ = s.ws.Close(websocket.StatusCode(wire.ClosePolicy), "token expired; reconnect with a fresh token and since=<last seq received>")
	case errors.Is(err, errStalled):
		s.srv.metrics.slowCloses.Inc()
		_ = s.ws.Close(websocket.StatusCode(wire.CloseSlowClient),
			fmt.Sprintf("the connection took no bytes for %v; reconnect with since=%d", s.srv.cfg.WriteTimeout, last))
	case errors.Is(err, errStream):
		s.srv.metrics.slowCloses.Inc()
		s.log.Warn("closing client: the stream is unavailable", "err", err)
		_ = s.ws.Close(websocket.StatusCode(wire.CloseSlowClient),
			fmt.Sprintf("the stream is unavailable; reconnect with since=%d", last))
	case errors.Is(err, errWrite), errors.Is(err, context.Canceled):
		// The client left or stalled past the write timeout.
	default:
		s.log.Warn("session failed", "err", err)
		_ = s.ws.Close(websocket.StatusInternalError, "gateway error; reconnect with since=<last seq received>")
	}
}
