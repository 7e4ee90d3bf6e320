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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// Defaults of Config.
const (
	// DefaultBuffer is the capacity, in messages, of the channel between
	// NATS and the dispatcher. If the dispatcher falls that far behind,
	// NATS drops messages of a subscription (a slow consumer); its ring
	// heals with one stream read.
	DefaultBuffer = 1024
	// DefaultBudget bounds the bytes all rings hold together.
	DefaultBudget = 256 << 20
	// DefaultReads bounds the stream reads running at once.
	DefaultReads = 4
)

// maxTracked bounds the concrete subjects whose last sequence one ring
// remembers (a wildcard ring sees one per output or client).
const maxTracked = 16384

// maxBatch bounds the rings one stream read fills.
const maxBatch = 64

// Config configures a Hub. Conn and Source are required.
type Config struct {
	Conn   *nats.Conn
	Source replay.Source
	// Budget bounds the bytes of every ring together (0: DefaultBudget).
	// Over it, the least recently used rings lose their oldest frames.
	Budget int64
	// Reads bounds concurrent stream reads (0: DefaultReads).
	Reads int
	// Buffer is the dispatcher channel's capacity (0: DefaultBuffer).
	Buffer int
	Log    *slog.Logger
	Stats  Stats
}

// Stats observes the hub; nil funcs are skipped.
type Stats struct {
	Subscriptions func(n int)
	// Hole: a hole in a subject's sequence chain, a slow consumer or a
	// reconnect, to be healed by a stream read.
	Hole func()
	// Read: a shared stream read started (rings is how many it fills).
	Read func(rings int)
	// Late: a frame was delivered behind a cursor's position.
	Late func()
}

func (s Stats) late() {
	if s.Late != nil {
		s.Late()
	}
}

// Hub owns the subscriptions, their rings, the dispatcher goroutine and
// the stream reads; Close ends them.
type Hub struct {
	nc     *nats.Conn
	source replay.Source
	log    *slog.Logger
	stats  Stats
	budget int64
	reads  int
	ch     chan *nats.Msg
	ctx    context.Context
	cancel context.CancelFunc
	// closeOnce makes Close safe to call more than once, concurrently.
	closeOnce sync.Once
	wg        sync.WaitGroup

	water  atomic.Uint64 // highest sequence handed to a ring
	epoch  atomic.Uint64 // counts stream recreations seen
	tick   atomic.Int64  // LRU clock
	bytes  atomic.Int64  // in all rings
	behind atomic.Int64  // cursors waiting for a stream read

	mu   sync.Mutex
	subs map[string]*ring

	// wakeBuf is the dispatcher's list of cursors to wake (wakeFor),
	// reused from frame to frame.
	wakeBuf []*Cursor

	infoMu   sync.Mutex
	info     Info
	st       jetstream.Stream
	checking atomic.Bool
	recheck  atomic.Bool

	readMu  sync.Mutex
	queue   []*ring
	readers int
}

// Info is what the hub knows of the stream, from its last lookup.
type Info struct {
	// Epoch names the stream's incarnation (its creation time).
	Epoch       string
	First, Last uint64
}

// New starts a hub.
func New(cfg Config) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Reads <= 0 {
		cfg.Reads = DefaultReads
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		nc: cfg.Conn, source: cfg.Source, log: cfg.Log, stats: cfg.Stats,
		budget: cfg.Budget, reads: cfg.Reads,
		ch:  make(chan *nats.Msg, cfg.Buffer),
		ctx: ctx, cancel: cancel,
		subs: make(map[string]*ring),
	}
	h.wg.Add(1)
	go h.dispatch()
	return h
}

// Refresh looks the stream up once. A changed epoch (the stream was
// deleted and created again) empties every ring, and every cursor gets
// Reset from its next Next.
func (h *Hub) Refresh(ctx context.Context) (Info, error) {
	st, err := h.source.JS.Stream(ctx, h.source.Stream)
	if err != nil {
		return Info{}, fmt.Errorf("stream %s: %w", h.source.Stream, err)
	}
	return h.Observe(st), nil
}

// Observe takes what a lookup of the stream made elsewhere saw (st's
// cached info), as Refresh does with its own.
func (h *Hub) Observe(st jetstream.Stream) Info {
	ci := st.CachedInfo()
	in := Info{Epoch: strconv.FormatInt(ci.Created.UnixNano(), 10), First: ci.State.FirstSeq, Last: ci.State.LastSeq}
	h.infoMu.Lock()
	old := h.info.Epoch
	h.info, h.st = in, st
	h.infoMu.Unlock()
	if old != "" && old != in.Epoch {
		h.log.Warn("the stream was created again; every connection starts over at its new start", "stream", h.source.Stream, "old_epoch", old, "epoch", in.Epoch)
		h.newEpoch()
	}
	return in
}

// Info returns what the last Refresh saw; the zero Info before one
// succeeded.
func (h *Hub) Info() Info {
	h.infoMu.Lock()
	defer h.infoMu.Unlock()
	return h.info
}

// Tip is the newest sequence the gateway knows the stream holds.
func (h *Hub) Tip() uint64 {
	return max(h.Info().Last, h.water.Load())
}

// Epoch returns the stream epoch the rings hold, as a counter that a
// cursor compares (see Next) and as the stream's epoch name.
func (h *Hub) Epoch() (uint64, string) {
	return h.epoch.Load(), h.Info().Epoch
}

// checkEpoch refreshes the stream info in the background: a frame
// suggested the stream was created again. Calls while a check runs make it
// look once more when it is done; rings held on suspicion are released
// when the stream turns out the same.
func (h *Hub) checkEpoch() {
	h.recheck.Store(true)
	if !h.checking.CompareAndSwap(false, true) {
		return // the running check looks again
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.checking.Store(false)
		for h.recheck.Swap(false) {
			ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
			before := h.epoch.Load()
			_, err := h.Refresh(ctx)
			cancel()
			if err != nil {
				h.log.Warn("stream lookup failed", "err", err)
				if h.ctx.Err() != nil {
					return
				}
				h.recheck.Store(true)
				time.Sleep(200 * time.Millisecond)
				continue
			}
			if h.epoch.Load() == before {
				h.unsuspect() // the same stream: false alarm
			}
		}
	}()
}

// rings returns the rings the hub holds now.
func (h *Hub) rings() []*ring {
	h.mu.Lock()
	defer h.mu.Unlock()
	rings := make([]*ring, 0, len(h.subs))
	for _, r := range h.subs {
		rings = append(rings, r)
	}
	return rings
}

// unsuspect lifts every ring's suspicion of a new epoch.
func (h *Hub) unsuspect() {
	rings := h.rings()
	for _, r := range rings {
		r.mu.Lock()
		was := r.suspect
		r.suspect = 0
		r.mu.Unlock()
		if was != 0 {
			h.wakeAll(r)
		}
	}
}

func (h *Hub) newEpoch() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch.Add(1)
	h.water.Store(0)
	for _, r := range h.subs {
		r.mu.Lock()
		h.bytes.Add(-r.clear())
		queue := r.need(1)
		r.mu.Unlock()
		if queue {
			h.queueRead(r)
		}
		h.wakeAll(r)
	}
}

// Join returns a cursor over the rings of watches, positioned after
// sequence *since on each, or, with since nil, after the newest frame the
// gateway knows of (live only: nothing stored before is sent; a stream
// lookup is made only for a ring it creates, after its subscription),
// subscribing to subjects no one watched yet.
// When Join returns, the gateway's NATS server has registered every
// subscription. In a cluster the interest reaches the server that
// republishes the stream asynchronously, so frames stored just after Join
// may still miss the gateway; the next frame's Nats-Last-Sequence shows
// the hole, which a stream read fills.
func (h *Hub) Join(ctx context.Context, w Waker, watches []Watch, since *uint64) (*Cursor, error) {
	c := &Cursor{h: h, waker: w, epoch: h.epoch.Load(), subs: make([]cursorSub, 0, len(watches))}
	var fresh []*ring
	h.mu.Lock()
	for _, wt := range watches {
		r := h.subs[wt.Live]
		if r == nil {
			sub, err := h.nc.ChanSubscribe(wt.Live, h.ch)
			if err != nil {
				h.mu.Unlock()
				h.settle(fresh, nil)
				h.Leave(c)
				return nil, fmt.Errorf("subscribe %s: %w", wt.Live, err)
			}
			// Unlimited pending: the channel is the bound.
			_ = sub.SetPendingLimits(-1, -1)
			r = &ring{subject: wt.Live, filter: wt.Filter, sub: sub,
				liveFrom: h.Tip() + 1, last: make(map[string]uint64), ready: make(chan struct{})}
			h.subs[wt.Live] = r
			fresh = append(fresh, r)
		}
		r.used.Store(h.tick.Add(1))
		r.mu.Lock()
		r.members = append(r.members, c)
		c.subs = append(c.subs, cursorSub{r: r, client: wt.Client, renditions: wt.Renditions, resume: since != nil})
		r.mu.Unlock()
	}
	n := len(h.subs)
	h.mu.Unlock()
	if len(fresh) > 0 {
		h.report(n)
		if err := h.nc.FlushWithContext(ctx); err != nil {
			h.settle(fresh, nil)
			h.Leave(c)
			return nil, fmt.Errorf("flush subscriptions: %w", err)
		}
		var info *Info
		if since == nil {
			// A live-only start needs the stream's last sequence now that
			// the subscriptions are in place: frames after it come live.
			// A resume reads the stream instead (the ring stays
			// unverified until it did).
			if in, err := h.Refresh(ctx); err == nil {
				info = &in
			} else {
				h.log.Warn("stream lookup failed; new live-only connections start at the last known sequence", "err", err)
			}
		}
		h.settle(fresh, info)
	}
	for i := range c.subs {
		cs := &c.subs[i]
		select {
		case <-cs.r.ready:
		case <-ctx.Done():
			h.Leave(c)
			return nil, ctx.Err()
		}
		cs.r.mu.RLock()
		cs.lateGen = cs.r.lateGen
		switch {
		case since != nil:
			cs.pos.Store(*since)
		default:
			pos := max(h.Tip(), cs.r.liveFrom-1)
			if n := len(cs.r.frames); n > 0 {
				pos = max(pos, cs.r.frames[n-1].Seq)
			}
			cs.pos.Store(pos)
		}
		cs.r.mu.RUnlock()
	}
	return c, nil
}

// settle ends the creation of fresh rings: with info, a lookup made after
// their subscriptions were in place, their live spans start after its
// last sequence and are verified.
func (h *Hub) settle(fresh []*ring, info *Info) {
	for _, r := range fresh {
		r.mu.Lock()
		if info != nil {
			r.liveFrom = max(r.liveFrom, info.Last+1)
			r.verified = true
		}
		r.mu.Unlock()
		close(r.ready)
	}
}

// Leave removes c from its rings and unsubscribes from subjects no one
// watches any more, dropping their rings.
func (h *Hub) Leave(c *Cursor) {
	h.mu.Lock()
	removed := false
	for i := range c.subs {
		r := c.subs[i].r
		r.mu.Lock()
		for i, m := range r.members {
			if m == c {
				last := len(r.members) - 1
				r.members[i] = r.members[last]
				r.members[last] = nil
				r.members = r.members[:last]
				break
			}
		}
		empty := len(r.members) == 0
		if empty {
			r.dropped = true
			h.bytes.Add(-r.bytes)
		}
		r.mu.Unlock()
		if empty && h.subs[r.subject] == r {
			_ = r.sub.Unsubscribe()
			delete(h.subs, r.subject)
			removed = true
		}
	}
	c.subs = nil
	c.setBehind(false)
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

// Bytes is what the rings hold together.
func (h *Hub) Bytes() int64 { return h.bytes.Load() }

// Behind is the number of cursors waiting for a stream read.
func (h *Hub) Behind() int64 { return h.behind.Load() }

// SlowConsumer says NATS dropped messages of sub: its ring heals with one
// stream read from its newest frame on.
func (h *Hub) SlowConsumer(sub *nats.Subscription) {
	h.mu.Lock()
	r := h.subs[sub.Subject]
	h.mu.Unlock()
	if r == nil || r.sub != sub {
		return
	}
	h.heal(r, 0, 0)
}

// Reconnected says the NATS connection was re-established: live frames
// may have been lost on every subscription, and every ring heals with a
// stream read.
func (h *Hub) Reconnected() {
	rings := h.rings()
	for _, r := range rings {
		h.heal(r, 0, 0)
	}
	h.checkEpoch()
}

// heal stalls r's live span at from (0: after its newest frame) and asks
// for a stream read from there. upTo is the newest sequence known
// missing (0: unknown, as after a slow consumer): a read already running
// that delivers past it fills the hole, and no other read is started.
func (h *Hub) heal(r *ring, from, upTo uint64) {
	if h.stats.Hole != nil {
		h.stats.Hole()
	}
	r.mu.Lock()
	if from == 0 {
		from = r.liveFrom
		if n := len(r.frames); n > 0 {
			from = max(from, r.frames[n-1].Seq+1)
		}
	}
	if r.stall == 0 || from < r.stall {
		r.stall = from
	}
	r.healGen++
	if r.healFrom == 0 || from < r.healFrom {
		r.healFrom = from
	}
	if upTo != 0 && r.reading && r.readFrom <= from {
		r.healUpTo = max(r.healUpTo, upTo)
		r.mu.Unlock()
		return
	}
	r.healBlind = true
	// Not need: a read running now may have passed the hole already. The
	// read starts at the stall, which only a read from there lifts.
	if r.want == 0 || r.stall < r.want {
		r.want = r.stall
	}
	queue := !r.queued && !r.dropped
	r.queued = r.queued || queue
	r.mu.Unlock()
	if queue {
		h.queueRead(r)
	}
}

// Close unsubscribes everything and stops the dispatcher and the reads.
func (h *Hub) Close() {
	h.mu.Lock()
	for subj, r := range h.subs {
		_ = r.sub.Unsubscribe()
		delete(h.subs, subj)
	}
	h.mu.Unlock()
	h.closeOnce.Do(h.cancel)
	h.wg.Wait()
	h.report(0)
}

func (h *Hub) report(n int) {
	if h.stats.Subscriptions != nil {
		h.stats.Subscriptions(n)
	}
}

// wakeAll wakes r's parked cursors.
func (h *Hub) wakeAll(r *ring) {
	r.mu.RLock()
	for _, c := range r.members {
		c.wake()
	}
	r.mu.RUnlock()
}

// wakeFor tells r's cursors that live entry f arrived. A parked cursor
// that does not take f is moved past it instead of woken, when f is all
// it would find (another client's frame or event on a shared ring: every
// event would otherwise wake every native connection of the gateway).
func (h *Hub) wakeFor(r *ring, f *Frame) {
	r.mu.Lock()
	w := h.water.Load()
	// A cursor that consumed the entry before f, and not f, would look at
	// f next.
	var before uint64
	i := r.find(f.Seq - 1)
	if i > 0 {
		before = r.frames[i-1].Seq
	}
	if i == len(r.frames) || r.frames[i] != f {
		before = f.Seq // f is not in the ring (evicted already): wake
	}
	wake := h.wakeBuf[:0]
	for _, c := range r.members {
		if !c.pass(r, f, before, w) {
			wake = append(wake, c)
		}
	}
	r.mu.Unlock()
	// Woken outside the lock, which the writers' Next takes.
	for i, c := range wake {
		c.wake()
		wake[i] = nil
	}
	h.wakeBuf = wake
}

// clientToken is the last token of a subject.
func clientToken(subj string) string {
	return subj[strings.LastIndexByte(subj, '.')+1:]
}

func (h *Hub) dispatch() {
	defer h.wg.Done()
	for {
		var m *nats.Msg
		select {
		case <-h.ctx.Done():
			return
		case m = <-h.ch:
		}
		h.deliver(m)
	}
}

// barrierSubject marks the hub's own messages in the dispatcher's
// channel (Hub.barrier); no NATS subject can be empty-tokened like it.
const barrierSubject = "..barrier"

// barrier raises the watermark to seq once every live message that
// reached the gateway before it is dispatched. A stream read ends with it:
// the read delivered everything of its rings up to seq, and live messages
// of other rings up to seq were republished before seq was stored, so
// once the connection has been flushed they are in the channel ahead of
// the barrier. Without it, rings that see no live traffic would claim
// nothing past the last live frame, and a cursor merging them with a ring
// a read filled would wait for unrelated traffic.
func (h *Hub) barrier(seq uint64) {
	epoch := h.epoch.Load()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
			return // the next live frame, or read, raises it
		}
		m := &nats.Msg{Subject: barrierSubject, Header: nats.Header{}}
		m.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(seq, 10))
		m.Header.Set("Epoch", strconv.FormatUint(epoch, 10))
		select {
		case h.ch <- m:
		case <-h.ctx.Done():
		}
	}()
}

// passBarrier handles a barrier message on the dispatcher.
func (h *Hub) passBarrier(m *nats.Msg) {
	seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if e, _ := strconv.ParseUint(m.Header.Get("Epoch"), 10, 64); e != h.epoch.Load() {
		return
	}
	for {
		w := h.water.Load()
		if seq <= w {
			return
		}
		if h.water.CompareAndSwap(w, seq) {
			break
		}
	}
	rings := h.rings()
	for _, r := range rings {
		h.wakeAll(r)
	}
}

// deliver puts one live message into its ring.
func (h *Hub) deliver(m *nats.Msg) {
	if m.Sub == nil && m.Subject == barrierSubject {
		h.passBarrier(m)
		return
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		h.log.Warn("live message without stream sequence", "subject", m.Subject)
		return
	}
	prev, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	h.mu.Lock()
	r := h.subs[m.Sub.Subject]
	h.mu.Unlock()
	if r == nil || r.sub != m.Sub {
		return // from a subscription dropped since
	}
	f, err := entry(seq, m.Subject, m.Header, m.Data)
	if err != nil {
		h.log.Warn("dropping live message", "subject", m.Subject, "seq", seq, "err", err)
		return
	}
	w := h.water.Load()
	r.mu.Lock()
	last, known := r.last[m.Subject]
	if known && seq <= last {
		old := r.at(seq)
		dup := old != nil && old.same(f)
		if old != nil && !dup || old == nil && prev == 0 {
			// Another frame at a sequence seen, or a subject's first
			// frame again: the stream may have been created again.
			// Nothing after the last frame seen goes out until a lookup
			// tells; a new epoch's read brings the frames back.
			if r.suspect == 0 {
				r.suspect = last + 1
			}
			r.mu.Unlock()
			h.checkEpoch()
			return
		}
		r.mu.Unlock()
		if dup {
			return
		}
		// A frame that arrived after later ones (a leader change): it
		// goes in its place, and to cursors past it as a late frame.
		r.mu.Lock()
	} else {
		if !known && len(r.last) >= maxTracked {
			clear(r.last) // bounds memory on wildcard subjects
		}
		r.last[m.Subject] = seq
	}
	var hole uint64
	switch {
	case known && seq > last && prev > last:
		hole = last + 1
	case !known && prev >= r.liveFrom && !r.has(prev):
		hole = r.liveFrom
	}
	n := r.insert(f, w)
	r.mu.Unlock()
	r.used.Store(h.tick.Add(1))
	if hole != 0 {
		h.log.Warn("live frames lost in transit; one stream read fills the hole",
			"subject", m.Subject, "last_seen", last, "previous", prev, "seq", seq)
		h.heal(r, hole, prev)
	}
	if seq > w {
		// Not Store: a new epoch may have set the watermark back to 0
		// since w was read, and this frame may be the old stream's.
		h.water.CompareAndSwap(w, seq)
	}
	h.wakeFor(r, f)
	if h.bytes.Add(n) > h.budget {
		h.evict()
	}
}

// entry is the ring entry of a stored message: an event under the events
// subjects, otherwise a frame.
func entry(seq uint64, subj string, hdr nats.Header, data []byte) (*Frame, error) {
	client := clientToken(subj)
	if subject.IsEvent(subj) {
		return NewEvent(seq, client, data)
	}
	meta, err := frame.Decode(hdr)
	if err != nil {
		return nil, err
	}
	return NewFrame(seq, client, meta, data), nil
}

// evict frees ring memory until the rings hold at most 15/16 of the
// budget, taking from the least recently used ring first (ring.evict
// says which of its frames go).
func (h *Hub) evict() {
	goal := h.budget - h.budget/16
	h.mu.Lock()
	defer h.mu.Unlock()
	tried := make(map[*ring]bool)
	for h.bytes.Load() > goal {
		var victim *ring
		for _, r := range h.subs {
			if !tried[r] && (victim == nil || r.used.Load() < victim.used.Load()) {
				victim = r
			}
		}
		if victim == nil {
			return
		}
		tried[victim] = true
		victim.mu.Lock()
		over := h.bytes.Load() - goal
		n := victim.evict(max(0, victim.bytes-over))
		victim.mu.Unlock()
		h.bytes.Add(-n)
	}
}

// errStale stops a read whose rings all left the hub.
var errStale = errors.New("no ring wants the read any more")
