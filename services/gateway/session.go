package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// item is one queued websocket message.
type item struct {
	seq  uint64
	text bool
	data []byte
}

// session is one websocket connection. The HTTP handler goroutine runs it
// as the writer; a second goroutine reads (and discards) client messages.
// Deliver and Missed run on the hub's dispatcher and never block.
type session struct {
	srv    *Server
	ws     *websocket.Conn
	req    *request
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	limit  int
	notify chan struct{}
	frames prometheus.Counter
	bytes  prometheus.Counter

	mu     sync.Mutex
	state  state
	behind bool // the writer must catch up from the stream once its queue is empty
	queue  []item
	queued int // bytes in queue and in the writer's current batch
	// last is the highest sequence queued or written; live frames at or
	// below it are duplicates.
	last      uint64
	held      []item
	heldBytes int
	heldLost  bool // held frames were dropped: read the stream again
}

var _ hub.Subscriber = (*session)(nil)

func newSession(srv *Server, ws *websocket.Conn, req *request) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		srv: srv, ws: ws, req: req, ctx: ctx, cancel: cancel,
		log:    srv.log.With("endpoint", req.endpoint, "output_id", req.outputID, "client_id", req.clientID),
		limit:  srv.cfg.QueueBytes,
		notify: make(chan struct{}, 1),
		frames: srv.metrics.frames.WithLabelValues(req.endpoint),
		bytes:  srv.metrics.bytes.WithLabelValues(req.endpoint),
		state:  stateHolding,
	}
}

func (s *session) comfy() bool { return s.req.endpoint == endpointComfy }

func (s *session) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Deliver queues a live frame, or holds it during a replay. It never
// blocks: a full queue switches the session to catch-up instead.
func (s *session) Deliver(f *hub.Frame) {
	var data []byte
	if s.comfy() {
		data = f.Comfy()
	} else {
		data = f.Native()
	}
	if data == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateLive:
		if f.Seq <= s.last {
			return
		}
		if s.queued+len(data) > s.limit && s.queued > 0 {
			s.srv.metrics.overflows.Inc()
			s.startHolding()
			return
		}
		s.queue = append(s.queue, item{seq: f.Seq, data: data})
		s.queued += len(data)
		s.last = f.Seq
		s.signal()
	case stateHolding:
		if s.heldLost {
			return
		}
		if s.heldBytes+len(data) > s.limit {
			s.held, s.heldBytes, s.heldLost = nil, 0, true
			return
		}
		s.held = append(s.held, item{seq: f.Seq, data: data})
		s.heldBytes += len(data)
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

// run serves the connection until it ends.
func (s *session) run() {
	m := s.srv.metrics.connections.WithLabelValues(s.req.endpoint)
	m.Inc()
	defer m.Dec()
	defer s.cancel()
	s.ws.SetReadLimit(ReadLimit)
	readerDone := make(chan struct{})
	go s.read(readerDone)
	defer func() {
		s.srv.hub.Leave(s, s.req.live)
		s.cancel()
		_ = s.ws.CloseNow()
		<-readerDone
	}()
	if err := s.start(); err != nil {
		s.finish(err)
		return
	}
	s.finish(s.loop())
}

// read discards client messages until the connection fails. A message
// over ReadLimit makes the library close with 1009.
func (s *session) read(done chan<- struct{}) {
	defer close(done)
	defer s.cancel()
	for {
		if _, _, err := s.ws.Read(s.ctx); err != nil {
			return
		}
	}
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
		s.handOver(since, false)
		return nil
	}
	s.srv.metrics.replays.Inc()
	return s.catchUp(since+1, true)
}

// errStream marks failures to read the stream.
var errStream = errors.New("stream unavailable")

// catchUp writes every frame from sequence from on straight from the
// stream, at the client's pace, then hands over to live.
func (s *session) catchUp(from uint64, initial bool) error {
	for {
		first, _, err := s.srv.source.Bounds(s.ctx)
		if err != nil {
			return fmt.Errorf("%w: %v", errStream, err)
		}
		if first > 0 && from < first {
			s.srv.metrics.gaps.Inc()
			if !s.comfy() {
				gap := wire.Control{Type: wire.TypeGap, From: from, To: first - 1}
				if err := s.write(true, wire.EncodeControl(gap)); err != nil {
					return err
				}
			}
			from = first
		}
		last, err := s.srv.source.Read(s.ctx, s.req.filters, from, s.replayOne)
		if err != nil {
			if errors.Is(err, errWrite) || errors.Is(err, errDraining) || s.ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("%w: %v", errStream, err)
		}
		if s.handOver(last, initial) {
			return nil
		}
		from = last + 1
	}
}

// replayOne writes one message read from the stream.
func (s *session) replayOne(m jetstream.Msg) error {
	if s.srv.isDraining() {
		return errDraining
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
	s.mu.Lock()
	s.last = max(s.last, md.Sequence.Stream) // for the resume point of a close reason
	s.mu.Unlock()
	return nil
}

// handOver ends a replay that reached sequence last: it queues the held
// live frames after last and goes live. It reports false when held frames
// were lost, so the stream must be read again from last+1.
func (s *session) handOver(last uint64, initial bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heldLost {
		s.held, s.heldBytes, s.heldLost = nil, 0, false
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
			s.queued += len(it.data)
			s.last = it.seq
		}
	}
	s.held, s.heldBytes = nil, 0
	s.state = stateLive
	s.behind = false
	s.signal()
	return true
}

// loop writes queued messages, catches up when behind, pings, and ends on
// drain, token expiry or a failed connection.
func (s *session) loop() error {
	ping := time.NewTicker(s.srv.cfg.PingInterval)
	defer ping.Stop()
	var expired <-chan time.Time
	if !s.req.expiry.IsZero() {
		t := time.NewTimer(time.Until(s.req.expiry))
		defer t.Stop()
		expired = t.C
	}
	for {
		if s.srv.isDraining() {
			return s.flushBatch(errDraining)
		}
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		behind := s.behind && len(batch) == 0
		from := s.last + 1
		s.mu.Unlock()
		if behind {
			s.srv.metrics.replays.Inc()
			if err := s.catchUp(from, false); err != nil {
				return err
			}
			continue
		}
		if len(batch) > 0 {
			if err := s.writeBatch(batch); err != nil {
				return err
			}
			continue
		}
		select {
		case <-s.notify:
		case <-s.srv.draining:
		case <-ping.C:
			ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.WriteTimeout)
			err := s.ws.Ping(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%w: ping: %v", errWrite, err)
			}
		case <-expired:
			return errExpired
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

var errExpired = errors.New("token expired")

func (s *session) writeBatch(batch []item) error {
	for i, it := range batch {
		err := s.write(it.text, it.data)
		s.mu.Lock()
		s.queued -= len(it.data)
		if err != nil {
			for _, rest := range batch[i+1:] {
				s.queued -= len(rest.data)
			}
		}
		s.mu.Unlock()
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
