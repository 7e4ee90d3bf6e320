// Package hub shares NATS subscriptions between the websocket connections
// of one gateway: one subscription per distinct live subject, however many
// connections watch it, dropped when the last one leaves.
//
// Every subscription delivers into one channel read by one dispatcher
// goroutine, so all subscribers see frames in one total order (the order
// NATS delivered them, which is stream-sequence order for a single stream).
// A frame's wire bytes are built once and the same slice is handed to every
// subscriber.
//
// A frame sent by reference (frame.Meta.Object) arrives without its image.
// The dispatcher never fetches it: subscribers queue the *Frame, and the
// first of them to need the bytes calls Resolve, which fetches the image
// once for all of them; the wire bytes are then built once and shared as
// for inline frames.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// DefaultBuffer is the capacity, in messages, of the channel between NATS
// and the dispatcher. If the dispatcher falls that far behind, NATS drops
// messages (a slow consumer); the hub sees the gap and tells subscribers.
const DefaultBuffer = 1024

// maxTracked bounds the concrete subjects whose last sequence one
// subscription remembers (a wildcard subscription sees one per output).
const maxTracked = 16384

// Subscriber receives frames. Its methods are called on the dispatcher
// goroutine and must not block.
type Subscriber interface {
	// Deliver hands over one frame. f is shared: read it, never modify it.
	Deliver(f *Frame)
	// Missed says frames of one of the subscriber's subjects were lost
	// between NATS and the hub (reconnect, slow consumer): the subscriber
	// should catch up from the stream.
	Missed()
}

// Frame is one live frame.
type Frame struct {
	Seq     uint64 // stream sequence
	Subject string // the concrete live subject
	// Prev is the sequence of the frame before it on Subject
	// (Nats-Last-Sequence), 0 if none.
	Prev uint64
	Meta frame.Meta

	mu     sync.Mutex
	image  []byte
	native []byte
	comfy  []byte
	// For a frame sent by reference: whether its image is here, or known
	// to be gone, and the channel closed when a running fetch ends.
	loaded   bool
	gone     error
	fetching chan struct{}
}

// NewFrame returns a frame with the image img (empty for a frame sent by
// reference).
func NewFrame(seq uint64, subject string, meta frame.Meta, img []byte) *Frame {
	return &Frame{Seq: seq, Subject: subject, Meta: meta, image: img, loaded: meta.Object == ""}
}

// ErrGone is wrapped by Fetch errors meaning the object no longer exists;
// Resolve remembers them.
var ErrGone = errors.New("object gone")

// UnknownSize is what Size counts for a frame sent by reference whose
// reference does not state the image's size.
const UnknownSize = 1 << 20

// Size is the image's size in bytes, known before the image is resolved.
func (f *Frame) Size() int {
	switch {
	case f.Meta.Object == "":
		return len(f.image)
	case f.Meta.ObjectSize > 0:
		return int(f.Meta.ObjectSize)
	}
	return UnknownSize
}

// Resolved reports whether the frame's image is available (always true for
// inline frames).
func (f *Frame) Resolved() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loaded
}

// Fetch reads the object with the given name.
type Fetch func(ctx context.Context, name string) ([]byte, error)

// Resolve makes the image of a frame sent by reference available. The
// first caller fetches it with fetch, under its own ctx; concurrent callers
// wait for that fetch (or for their ctx) and share its outcome. A failure
// wrapping ErrGone is remembered and returned to every later caller; any
// other failure is returned to the caller that fetched (the others try
// again). Resolve is safe for concurrent use and a no-op for inline frames.
func (f *Frame) Resolve(ctx context.Context, fetch Fetch) error {
	for {
		f.mu.Lock()
		if f.loaded || f.gone != nil {
			err := f.gone
			f.mu.Unlock()
			return err
		}
		if wait := f.fetching; wait != nil {
			f.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		done := make(chan struct{})
		f.fetching = done
		f.mu.Unlock()

		img, err := fetch(ctx, f.Meta.Object)
		f.mu.Lock()
		switch {
		case err == nil:
			f.image, f.loaded = img, true
		case errors.Is(err, ErrGone):
			f.gone = err
		}
		f.fetching = nil
		close(done)
		f.mu.Unlock()
		return err
	}
}

// Image returns the frame's image; nil for a frame sent by reference
// until Resolve succeeded.
func (f *Frame) Image() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.image
}

// Native returns the frame's native wire bytes, built on first use and
// shared by every caller; nil while the image is not resolved. Safe for
// concurrent use.
func (f *Frame) Native() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.native == nil && f.loaded {
		f.native = wire.EncodeNative(wire.HeaderOf(f.Seq, f.Meta), f.image)
	}
	return f.native
}

// Comfy returns the frame's ComfyDeploy wire bytes, built on first use and
// shared by every caller; nil while the image is not resolved or when the
// frame cannot be expressed in that format. Safe for concurrent use.
func (f *Frame) Comfy() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.comfy == nil && f.loaded {
		b, err := wire.EncodeComfy(f.Meta.OutputID, f.Meta.Format, f.image)
		if err != nil {
			return nil
		}
		f.comfy = b
	}
	return f.comfy
}

// Stats observes the hub; nil funcs are skipped.
type Stats struct {
	Subscriptions func(n int)
	Gap           func()
}

// Hub owns the subscriptions and the dispatcher goroutine; Close ends it.
type Hub struct {
	nc    *nats.Conn
	log   *slog.Logger
	stats Stats
	ch    chan *nats.Msg
	done  chan struct{}
	// closeOnce makes Close safe to call more than once, concurrently.
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu   sync.Mutex
	subs map[string]*entry
}

type entry struct {
	sub     *nats.Subscription
	members map[Subscriber]struct{}
	// last is the last sequence seen per concrete subject; it detects
	// frames lost in transit through Nats-Last-Sequence.
	last map[string]uint64
}

// New starts a hub on nc with a channel of buffer messages (0 means
// DefaultBuffer).
func New(nc *nats.Conn, buffer int, log *slog.Logger, stats Stats) *Hub {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	h := &Hub{
		nc: nc, log: log, stats: stats,
		ch:   make(chan *nats.Msg, buffer),
		done: make(chan struct{}),
		subs: make(map[string]*entry),
	}
	h.wg.Add(1)
	go h.dispatch()
	return h
}

// Join adds s to each subject, subscribing to the subjects no one watched
// yet. When Join returns nil, the gateway's NATS server has registered
// every subscription. In a cluster the interest reaches the server that
// republishes the stream asynchronously, so frames stored just after Join
// may still miss s; each frame's Prev shows it (the session's hand-over
// checks it).
func (h *Hub) Join(ctx context.Context, s Subscriber, subjects []string) error {
	h.mu.Lock()
	added := false
	for i, subj := range subjects {
		e := h.subs[subj]
		if e == nil {
			sub, err := h.nc.ChanSubscribe(subj, h.ch)
			if err != nil {
				h.mu.Unlock()
				h.Leave(s, subjects[:i])
				return fmt.Errorf("subscribe %s: %w", subj, err)
			}
			// Unlimited pending: the channel is the bound.
			_ = sub.SetPendingLimits(-1, -1)
			e = &entry{sub: sub, members: make(map[Subscriber]struct{}), last: make(map[string]uint64)}
			h.subs[subj] = e
			added = true
		}
		e.members[s] = struct{}{}
	}
	n := len(h.subs)
	h.mu.Unlock()
	if added {
		h.report(n)
		if err := h.nc.FlushWithContext(ctx); err != nil {
			h.Leave(s, subjects)
			return fmt.Errorf("flush subscriptions: %w", err)
		}
	}
	return nil
}

// Leave removes s from each subject and unsubscribes from subjects no one
// watches any more.
func (h *Hub) Leave(s Subscriber, subjects []string) {
	h.mu.Lock()
	removed := false
	for _, subj := range subjects {
		e := h.subs[subj]
		if e == nil {
			continue
		}
		delete(e.members, s)
		if len(e.members) == 0 {
			_ = e.sub.Unsubscribe()
			delete(h.subs, subj)
			removed = true
		}
	}
	n := len(h.subs)
	h.mu.Unlock()
	if removed {
		h.report(n)
	}
}

// Subscriptions is the number of NATS subscriptions the hub holds.
func (h *Hub) Subscriptions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Reset forgets the sequences seen and tells every subscriber it missed
// frames. Call it when the NATS connection was re-established.
//
// Subscribers are told under h.mu: the dispatcher, which no longer sees a
// jump in sequences once they are forgotten, must not hand anyone a frame
// before it was told, or that subscriber would go past the frames lost.
func (h *Hub) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.subs {
		clear(e.last)
		for s := range e.members {
			s.Missed()
		}
	}
}

// Close unsubscribes everything and stops the dispatcher.
func (h *Hub) Close() {
	h.mu.Lock()
	for subj, e := range h.subs {
		_ = e.sub.Unsubscribe()
		delete(h.subs, subj)
	}
	h.mu.Unlock()
	h.closeOnce.Do(func() { close(h.done) })
	h.wg.Wait()
	h.report(0)
}

func (h *Hub) report(n int) {
	if h.stats.Subscriptions != nil {
		h.stats.Subscriptions(n)
	}
}

func (h *Hub) dispatch() {
	defer h.wg.Done()
	var members []Subscriber
	for {
		var m *nats.Msg
		select {
		case <-h.done:
			return
		case m = <-h.ch:
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			h.log.Warn("live message without stream sequence", "subject", m.Subject)
			continue
		}
		prev, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)

		h.mu.Lock()
		e := h.subs[m.Sub.Subject]
		if e == nil || e.sub != m.Sub {
			h.mu.Unlock()
			continue // from a subscription dropped since
		}
		members = members[:0]
		for s := range e.members {
			members = append(members, s)
		}
		last, known := e.last[m.Subject]
		if known && seq <= last {
			h.mu.Unlock()
			continue // redelivered
		}
		if !known && len(e.last) >= maxTracked {
			clear(e.last) // bounds memory on wildcard subjects
		}
		e.last[m.Subject] = seq
		missed := known && prev != last
		h.mu.Unlock()

		if missed {
			if h.stats.Gap != nil {
				h.stats.Gap()
			}
			h.log.Warn("live frames lost in transit; subscribers catch up from the stream",
				"subject", m.Subject, "last_seen", last, "previous", prev, "seq", seq)
			for _, s := range members {
				s.Missed()
			}
			clear(members)
			continue
		}
		meta, err := frame.Decode(m.Header)
		if err != nil {
			h.log.Warn("dropping live frame with bad metadata", "subject", m.Subject, "seq", seq, "err", err)
			continue
		}
		f := NewFrame(seq, m.Subject, meta, m.Data)
		f.Prev = prev
		for _, s := range members {
			s.Deliver(f)
		}
		clear(members)
	}
}
