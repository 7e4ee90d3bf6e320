package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// Why a session stopped writing.
var (
	errWrite    = errors.New("write to client failed")
	errDraining = errors.New("gateway draining")
)

// state says where live frames go.
type state int

const (
	// stateHolding: the writer reads the stream (replay or catch-up); live
	// frames are held, bounded, for the hand-over.
	stateHolding state = iota
	// stateLive: live frames are queued for the writer.
	stateLive
)

// item is one queued websocket message: data, or for a frame sent by
// reference, the shared frame whose bytes the writer resolves (large.go).
type item struct {
	seq   uint64
	text  bool
	data  []byte
	frame *hub.Frame
	// subject and prev are a live frame's Subject and Prev, for the
	// hand-over's check; "" for what the session wrote itself.
	subject string
	prev    uint64
}

// size is what the item counts against the queue bound.
func (it item) size() int {
	if it.frame != nil {
		return it.frame.Size()
	}
	return len(it.data)
}

// session is one websocket connection, run by up to two goroutines.
//
// The reader reads (and discards) client messages, which keeps the library
// answering pings and close frames. It owns the session: when the
// connection fails or is closed, it stops the writer and cleans up.
//
// The writer runs only while there is work: the start (hello, replay),
// queued messages, a catch-up, a due ping, or a close. signal starts it
// and it exits once idle, so an idle connection holds one goroutine and
// no writer stack. Deliver and Missed run on the hub's dispatcher and
// never block; the ping and expiry timers only flag work and signal.
type session struct {
	srv     *Server
	ws      *websocket.Conn
	conn    net.Conn // under ws: closing it cuts the connection at once
	req     *request
	log     *slog.Logger
	limit   int
	frames  prometheus.Counter
	bytes   prometheus.Counter
	pinger  *time.Timer
	expirer *time.Timer // nil without a token expiry
	writers sync.WaitGroup

	// ctx is the running writer's context, set by signal before the
	// writer starts and read by the writer only; it ends when the writer
	// parks or the session is cut. started is the writer's too: writer
	// runs are ordered by mu.
	ctx     context.Context
	cancel  context.CancelFunc
	started bool

	mu      sync.Mutex
	running bool // a writer goroutine runs
	ended   bool // the session ended: no writer starts any more
	pingDue bool
	expired bool
	state   state
	behind  bool // the writer must catch up from the stream once its queue is empty
	queue   []item
	queued  int // bytes in queue and in the writer's current batch
	// last is the highest sequence queued or written; live frames at or
	// below it are duplicates.
	last      uint64
	held      []item
	heldBytes int
	heldLost  bool // held frames were dropped: read the stream again
	// gapTo is the highest sequence reported in a gap message (or, on
	// ComfyDeploy, skipped as one): the stream holds nothing up to it
	// for the session any more.
	gapTo uint64
}

var _ hub.Subscriber = (*session)(nil)

func newSession(srv *Server, ws *websocket.Conn, conn net.Conn, req *request) *session {
	return &session{
		srv: srv, ws: ws, conn: conn, req: req,
		log:    slog.New(sessionLog{srv.log.Handler(), req}),
		limit:  srv.cfg.QueueBytes,
		frames: srv.metrics.frames.WithLabelValues(req.endpoint),
		bytes:  srv.metrics.bytes.WithLabelValues(req.endpoint),
		state:  stateHolding,
	}
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
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.writers.Add(1)
	go s.writeLoop()
}

// wake starts the writer to look at the session's state again (drain).
func (s *session) wake() {
	s.mu.Lock()
	s.signal()
	s.mu.Unlock()
}

// cut closes the connection at once and stops the writer; the reader then
// ends the session.
func (s *session) cut() {
	s.mu.Lock()
	if s.running {
		s.cancel()
	}
	s.mu.Unlock()
	_ = s.conn.Close()
}

// Deliver queues a live frame, or holds it during a replay. It never
// blocks: a full queue switches the session to catch-up instead.
func (s *session) Deliver(f *hub.Frame) {
	it := item{seq: f.Seq, frame: f, subject: f.Subject, prev: f.Prev}
	if f.Meta.Object == "" {
		var data []byte
		if s.comfy() {
			data = f.Comfy()
		} else {
			data = f.Native()
		}
		if data == nil {
			return
		}
		it = item{seq: f.Seq, data: data, subject: f.Subject, prev: f.Prev}
	}
	size := it.size()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateLive:
		if f.Seq <= s.last {
			return
		}
		if s.queued+size > s.limit && s.queued > 0 {
			s.srv.metrics.overflows.Inc()
			s.startHolding()
			return
		}
		s.queue = append(s.queue, it)
		s.queued += size
		s.last = f.Seq
		s.signal()
	case stateHolding:
		if s.heldLost {
			return
		}
		if s.heldBytes+size > s.limit {
			s.held, s.heldBytes, s.heldLost = nil, 0, true
			return
		}
		s.held = append(s.held, it)
		s.heldBytes += size
	}
}

// Missed switches a live session to catch-up; a replaying one reads the
// stream once more before going live.
func (s *session) Missed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateLive:
		s.startHolding()
	case stateHolding:
		s.held, s.heldBytes, s.heldLost = nil, 0, true
	}
}

// startHolding needs s.mu.
func (s *session) startHolding() {
	s.state = stateHolding
	s.behind = true
	s.held, s.heldBytes, s.heldLost = nil, 0, false
	s.signal()
}

// begin starts the reader, the timers and the writer (which starts the
// session). It returns at once; the reader ends the session.
func (s *session) begin() {
	s.srv.metrics.connections.WithLabelValues(s.req.endpoint).Inc()
	s.ws.SetReadLimit(ReadLimit)
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

// read discards client messages until the connection fails, then ends
// the session. A message over ReadLimit makes the library close with
// 1009. It reads without a context: cut closes the connection instead, so
// no per-read context registration is held while idle.
func (s *session) read() {
	for {
		if _, _, err := s.ws.Read(context.Background()); err != nil {
			break
		}
	}
	s.mu.Lock()
	s.ended = true
	if s.running {
		s.cancel()
	}
	s.mu.Unlock()
	s.writers.Wait()
	s.pinger.Stop()
	if s.expirer != nil {
		s.expirer.Stop()
	}
	s.srv.hub.Leave(s, s.req.live)
	_ = s.ws.CloseNow()
	s.srv.metrics.connections.WithLabelValues(s.req.endpoint).Dec()
	s.srv.remove(s)
}

// writeLoop is the writer goroutine. When the session fails or must close,
// it closes the connection with the code the cause calls for.
func (s *session) writeLoop() {
	defer s.writers.Done()
	err := s.loop()
	if err == nil {
		return // parked; signal starts a new writer
	}
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.finish(err)
	s.cancel()
	_ = s.ws.CloseNow()
}

// start joins the hub, sends the first message, and replays.
func (s *session) start() error {
	jctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.WriteTimeout)
	err := s.srv.hub.Join(jctx, s, s.req.live)
	cancel()
	if err != nil {
		return fmt.Errorf("join live subjects: %w", err)
	}
	replaying := s.req.since != nil || s.req.last > 0
	var since uint64
	var sincep *uint64
	switch {
	case s.req.since != nil:
		since = *s.req.since
		sincep = &since
	case s.req.last > 0:
		n, err := s.srv.source.SinceForLast(s.ctx, s.req.filters, s.req.last)
		if err != nil {
			return fmt.Errorf("%w: find last %d frames: %v", errStream, s.req.last, err)
		}
		since, sincep = n, &n
	default:
		// Live only: frames stored up to now are not sent.
		if _, tip, err := s.srv.source.Bounds(s.ctx); err == nil {
			since, sincep = tip, &tip
		}
	}
	s.mu.Lock()
	s.last = since
	s.mu.Unlock()
	if s.comfy() {
		if err := s.write(true, wire.Status(s.req.clientID)); err != nil {
			return err
		}
	} else {
		hello := wire.Control{Type: wire.TypeHello, Gateway: s.srv.cfg.ID,
			OutputID: s.req.outputID, ClientID: s.req.clientID, Since: sincep}
		if err := s.write(true, wire.EncodeControl(hello)); err != nil {
			return err
		}
	}
	if !replaying {
		if s.handOver(since, false, true) {
			return nil
		}
		// Held frames were lost before the hand-over: read them from the
		// stream.
		return s.catchUp(since+1, false)
	}
	s.srv.metrics.replays.Inc()
	return s.catchUp(since+1, true)
}

// errStream marks failures to read the stream.
var errStream = errors.New("stream unavailable")

// Stream reads that fail (no stream leader during a NATS failover, a NATS
// reconnect) are retried with backoff for up to streamRetry before the
// client is cut off with 4008.
const (
	streamRetry     = 15 * time.Second
	streamRetryWait = 100 * time.Millisecond
	streamRetryMax  = 2 * time.Second
)

// catchUp writes every frame from sequence from on straight from the
// stream, at the client's pace, then hands over to live.
//
// Frames that leave the stream's window (age, limits, purge) before they
// are read are reported to a native client with a gap message naming the
// sequences lost, never skipped silently: those below the stream's first
// sequence when a read starts, and those the window passed while the read
// was on its way to them (replay.Source.ReadWithGaps).
func (s *session) catchUp(from uint64, initial bool) error {
	var failing time.Time // when reads started failing; zero while they work
	wait := streamRetryWait
	// A hand-over refused for a held frame's missed predecessor, at the
	// sequence the read had reached: a read again that brings nothing new
	// means the predecessor is not in the stream any more (deleted), and
	// the next hand-over trusts the held frames.
	refusedAt := uint64(math.MaxUint64)
	for {
		last, err := s.readStream(from)
		if last >= from {
			from, failing, wait = last+1, time.Time{}, streamRetryWait
		}
		if err == nil {
			if s.handOver(last, initial, last != refusedAt) {
				return nil
			}
			refusedAt = last
			continue
		}
		if !errors.Is(err, errStream) {
			return err
		}
		if failing.IsZero() {
			failing = time.Now()
		}
		if time.Since(failing) > streamRetry {
			return err
		}
		s.log.Debug("stream read failed; retrying", "err", err, "from", from, "retry_in", wait)
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-s.srv.draining:
			return errDraining
		case <-time.After(wait):
		}
		wait = min(2*wait, streamRetryMax)
	}
}

// readStream writes the stream's frames from sequence from up to its tip
// and returns the last sequence written (from-1 if none).
func (s *session) readStream(from uint64) (uint64, error) {
	first, _, err := s.srv.source.Bounds(s.ctx)
	if err != nil {
		return from - 1, fmt.Errorf("%w: %v", errStream, err)
	}
	if first > 0 && from < first {
		if err := s.gap(from, first-1); err != nil {
			return from - 1, err
		}
		from = first
	}
	last, err := s.srv.source.ReadWithGaps(s.ctx, s.req.filters, from, s.replayOne, s.gap)
	if err != nil {
		if errors.Is(err, errWrite) || errors.Is(err, errDraining) || errors.Is(err, errExpired) || s.ctx.Err() != nil {
			return last, err
		}
		return last, fmt.Errorf("%w: %v", errStream, err)
	}
	return last, nil
}

// gap reports lost sequences from..to: a gap message on the native
// endpoint; ComfyDeploy clients have no such message and skip them.
func (s *session) gap(from, to uint64) error {
	s.srv.metrics.gaps.Inc()
	s.mu.Lock()
	s.gapTo = max(s.gapTo, to)
	s.mu.Unlock()
	if s.comfy() {
		return nil
	}
	return s.write(true, wire.EncodeControl(wire.Control{Type: wire.TypeGap, From: from, To: to}))
}

// replayOne writes one message read from the stream.
func (s *session) replayOne(m jetstream.Msg) error {
	if s.srv.isDraining() {
		return errDraining
	}
	s.mu.Lock()
	expired := s.expired
	s.mu.Unlock()
	if expired {
		return errExpired
	}
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	meta, err := frame.Decode(m.Headers())
	if err != nil {
		s.log.Warn("skipping stored frame with bad metadata", "seq", md.Sequence.Stream, "err", err)
		return nil
	}
	if meta.Object != "" {
		if err := s.replayObject(md.Sequence.Stream, meta); err != nil {
			return err
		}
	} else {
		var data []byte
		if s.comfy() {
			if data, err = wire.EncodeComfy(meta.OutputID, meta.Format, m.Data()); err != nil {
				return nil
			}
		} else {
			data = wire.EncodeNative(wire.HeaderOf(md.Sequence.Stream, meta), m.Data())
		}
		if err := s.write(false, data); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.last = max(s.last, md.Sequence.Stream) // for the resume point of a close reason
	s.mu.Unlock()
	return nil
}

// handOver ends a replay that reached sequence last: it queues the held
// live frames after last and goes live. It reports false when held frames
// were lost, so the stream must be read again from last+1.
func (s *session) handOver(last uint64, initial, check bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var firstHeld uint64
	if len(s.held) > 0 {
		firstHeld = s.held[0].seq
	}
	s.log.Debug("replay reached the stream's tip", "last", last, "held", len(s.held), "first_held", firstHeld, "held_lost", s.heldLost)
	if s.heldLost {
		s.held, s.heldBytes, s.heldLost = nil, 0, false
		return false
	}
	if it, missed := s.heldAfterMissed(last); missed && check {
		s.log.Debug("a held frame's predecessor was neither read nor held; reading the stream again",
			"last", last, "seq", it.seq, "subject", it.subject, "previous", it.prev)
		return false
	}
	if initial && !s.comfy() {
		l := last
		live := wire.EncodeControl(wire.Control{Type: wire.TypeLive, Seq: &l})
		s.queue = append(s.queue, item{text: true, data: live})
		s.queued += len(live)
	}
	s.last = last
	for _, it := range s.held {
		if it.seq > s.last {
			s.queue = append(s.queue, it)
			s.queued += it.size()
			s.last = it.seq
		}
	}
	s.held, s.heldBytes = nil, 0
	s.state = stateLive
	s.behind = false
	s.signal()
	return true
}

// heldAfterMissed returns the first held frame whose predecessor on its
// subject the session has neither read from the stream (up to last, or
// reported in a gap) nor held, if there is one. The predecessor was stored before
// this gateway's interest in the subject reached the server that
// republishes the stream (interest crosses a cluster asynchronously), and
// after the replay's consumer saw the stream: only reading the stream
// again delivers it. It needs s.mu.
func (s *session) heldAfterMissed(last uint64) (item, bool) {
	covered := max(last, s.gapTo)
	var seen map[string]bool
	for _, it := range s.held {
		if it.subject == "" || it.seq <= last || seen[it.subject] {
			continue
		}
		if it.prev > covered {
			return it, true
		}
		if seen == nil {
			seen = make(map[string]bool)
		}
		seen[it.subject] = true
	}
	return item{}, false
}

// loop starts the session on the writer's first run, then writes queued
// messages, catches up when behind and pings until there is nothing to do:
// it then clears s.running and returns nil. It returns the cause when the
// session must end: drain, token expiry, a failed connection or stream.
func (s *session) loop() error {
	if !s.started {
		s.started = true
		if err := s.start(); err != nil {
			return err
		}
	}
	for {
		if s.srv.isDraining() {
			return s.flushBatch(errDraining)
		}
		if err := s.ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.expired {
			s.mu.Unlock()
			return errExpired
		}
		batch := s.queue
		s.queue = nil
		behind := s.behind && len(batch) == 0
		// Pings go out when nothing else is to be written, as a
		// connection that is written to shows its liveness through the
		// write timeout.
		ping := s.pingDue && len(batch) == 0 && !behind
		s.pingDue = s.pingDue && !ping
		from := s.last + 1
		if len(batch) == 0 && !behind && !ping {
			s.running = false
			cancel := s.cancel
			s.mu.Unlock()
			cancel()
			return nil
		}
		s.mu.Unlock()
		switch {
		case behind:
			s.srv.metrics.replays.Inc()
			if err := s.catchUp(from, false); err != nil {
				return err
			}
		case len(batch) > 0:
			if err := s.writeBatch(batch); err != nil {
				return err
			}
		case ping:
			ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.WriteTimeout)
			err := s.ws.Ping(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%w: ping: %v", errWrite, err)
			}
			s.srv.metrics.pings.Inc()
		}
	}
}

var errExpired = errors.New("token expired")

func (s *session) writeBatch(batch []item) error {
	for i, it := range batch {
		var err error
		if it.frame != nil {
			err = s.writeFrame(it)
		} else {
			err = s.write(it.text, it.data)
		}
		s.mu.Lock()
		s.queued -= it.size()
		if err != nil {
			for _, rest := range batch[i+1:] {
				s.queued -= rest.size()
			}
		}
		s.mu.Unlock()
		if errors.Is(err, errRefetch) {
			s.refetch(it.seq)
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// flushBatch writes what is queued now, then returns cause.
func (s *session) flushBatch(cause error) error {
	s.mu.Lock()
	batch := s.queue
	s.queue = nil
	s.mu.Unlock()
	if err := s.writeBatch(batch); err != nil {
		return err
	}
	return cause
}

func (s *session) write(text bool, data []byte) error {
	typ := websocket.MessageBinary
	if text {
		typ = websocket.MessageText
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.WriteTimeout)
	err := s.ws.Write(ctx, typ, data)
	cancel()
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
	switch {
	case errors.Is(err, errDraining):
		_ = s.ws.Close(websocket.StatusCode(wire.CloseGoingAway),
			fmt.Sprintf("gateway draining; reconnect with since=<last seq received> (about %d)", last))
	case errors.Is(err, errExpired):
		s.srv.metrics.authFailures.WithLabelValues("expired_in_session").Inc()
		_ = s.ws.Close(websocket.StatusCode(wire.ClosePolicy), "token expired; reconnect with a fresh token and since=<last seq received>")
	case errors.Is(err, errStream):
		s.srv.metrics.slowCloses.Inc()
		s.log.Warn("closing client that cannot be caught up", "err", err)
		_ = s.ws.Close(websocket.StatusCode(wire.CloseSlowClient),
			fmt.Sprintf("too far behind and the stream is unavailable; reconnect with since=%d", last))
	case errors.Is(err, errWrite), errors.Is(err, context.Canceled):
		// The client left or stalled past the write timeout.
	default:
		s.log.Warn("session failed", "err", err)
		_ = s.ws.Close(websocket.StatusInternalError, "gateway error; reconnect with since=<last seq received>")
	}
}
