package hub

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/subject"
)

// Waker is told that a cursor may have something to send. Wake is called
// from the dispatcher and from stream reads: it must not block.
type Waker interface {
	Wake()
}

// Watch is one ring a cursor follows, and which of its frames it takes.
type Watch struct {
	// Live is the live subject (a hub subject, wildcards allowed) and
	// Filter the stream subject it mirrors.
	Live, Filter string
	// Client, if set, takes only the frames of this client token and
	// broadcasts; "" takes every frame of the ring.
	Client string
	// Renditions says which renditions of images it takes; the zero value
	// takes full frames only. Events are taken whatever it says.
	Renditions replay.Renditions
}

// Cursor is one connection's position in the rings of its subjects. Its
// methods other than Wake-related ones are called by one goroutine at a
// time (the connection's writer).
type Cursor struct {
	h      *Hub
	waker  Waker
	subs   []cursorSub
	epoch  uint64
	gapTo  uint64
	parked atomic.Bool
	// idle: the last Next found nothing in any ring, not even a frame
	// held back by another ring, and no Next runs; the dispatcher may
	// then move the cursor past entries it does not take (pass).
	idle   atomic.Bool
	behind bool
	toRead [4]*ring // Next's rings to queue for a read, without allocating
}

type cursorSub struct {
	r          *ring
	client     string
	renditions replay.Renditions
	// pos: every entry of r up to pos is consumed. The writer sets it;
	// eviction reads it.
	pos     atomic.Uint64
	lateGen uint64
	resume  bool // joined with a since: needs r verified
}

// Kind says what Next found.
type Kind int

const (
	// Wait: nothing to send now; the cursor's waker is called when that
	// changes (after Park).
	Wait Kind = iota
	// Send: Entry is the next frame.
	Send
	// Gap: sequences From..To left the stream before they could be read.
	Gap
	// Reset: the stream was recreated; the cursor starts over at sequence
	// 0 of the new epoch.
	Reset
	// Behind: the cursor waits for a stream read, which has been failing
	// for longer than StreamRetry.
	Behind
)

// Next is what a cursor should do next.
type Next struct {
	Kind     Kind
	Frame    *Frame
	From, To uint64
	// Reading: the cursor waits for a stream read of a range the rings
	// do not hold, or holds a frame back until a read's end reaches its
	// other rings: what it has sent is not all there is yet.
	Reading bool
}

// StreamRetry bounds how long a cursor waits for stream reads that keep
// failing before Next reports Behind.
const StreamRetry = 15 * time.Second

// Next returns what the cursor sends next, in stream-sequence order over
// its rings. When it returns Wait, call Park and then Next once more: a
// change between the two is never missed.
func (c *Cursor) Next() Next {
	c.idle.Store(false)
	h := c.h
	if e := h.epoch.Load(); e != c.epoch {
		c.epoch = e
		c.gapTo = 0
		for i := range c.subs {
			c.subs[i].pos.Store(0)
		}
		return Next{Kind: Reset}
	}
	w := h.water.Load()
	tick := h.tick.Load() // the dispatcher advances it; Next only reads
	limit := uint64(math.MaxUint64)
	var best *Frame
	bi := -1
	reading, failed := false, false
	toRead := c.toRead[:0]
	for i := range c.subs {
		cs := &c.subs[i]
		r := cs.r
		if r.used.Load() != tick {
			r.used.Store(tick)
		}
		r.mu.RLock()
		if late := c.late(cs); late != nil {
			r.mu.RUnlock()
			return Next{Kind: Send, Frame: late}
		}
		pos := cs.pos.Load()
		end, ok, filling := cs.serves(pos, w)
		reading = reading || filling
		if !ok {
			r.mu.RUnlock()
			reading = true
			r.mu.Lock()
			// Looked at again: a read may have ended in between.
			_, ok, _ = cs.serves(pos, w)
			queue := !ok && r.need(pos+1)
			failing := r.failing
			r.mu.Unlock()
			if queue {
				// Queued together after the loop: one read fills them all.
				toRead = append(toRead, r)
			}
			if ok {
				h.queueRead(toRead...)
				return c.Next()
			}
			if !failing.IsZero() && time.Since(failing) > StreamRetry {
				failed = true
			}
			limit = min(limit, pos)
			continue
		}
		if r.stall != 0 && pos+1 >= r.stall {
			reading = true // a heal read is on its way
		}
		var f *Frame
		for j := r.find(pos); j < len(r.frames) && r.frames[j].Seq <= end; j++ {
			e := r.frames[j]
			if e.IsGap() || cs.takes(e) {
				f = e
				break
			}
			cs.pos.Store(e.Seq) // another client's frame
		}
		r.mu.RUnlock()
		limit = min(limit, end)
		if f != nil && (best == nil || f.Seq < best.Seq) {
			best, bi = f, i
		}
	}
	if len(toRead) > 0 {
		h.queueRead(toRead...)
	}
	c.setBehind(reading)
	if failed {
		return Next{Kind: Behind, Reading: true}
	}
	if best == nil || best.Seq > limit {
		c.idle.Store(best == nil && !reading)
		// A frame held back by another ring's end (which a read's
		// barrier raises) is not the end of a replay either.
		return Next{Kind: Wait, Reading: reading || best != nil}
	}
	cs := &c.subs[bi]
	if best.IsGap() {
		from := max(best.GapFrom, cs.pos.Load()+1, c.gapTo+1)
		cs.pos.Store(best.Seq)
		if best.Seq <= c.gapTo {
			return c.Next()
		}
		c.gapTo = best.Seq
		return Next{Kind: Gap, From: from, To: best.Seq}
	}
	cs.pos.Store(best.Seq)
	return Next{Kind: Send, Frame: best}
}

// takes reports whether the cursor takes frame f of its ring: every frame,
// or its client's and broadcasts, of the renditions it watches.
func (cs *cursorSub) takes(f *Frame) bool {
	if cs.client != "" && f.Client != cs.client && f.Client != subject.Broadcast {
		return false
	}
	return f.IsEvent() || cs.renditions.Takes(f.Meta.Rendition)
}

// serves returns the end of what the ring holds for the cursor from
// pos+1 on, or false when a stream read must fill it first; filling says
// a read is still on its way (a resume into a ring not yet verified). It
// needs cs.r.mu.
func (cs *cursorSub) serves(pos, w uint64) (end uint64, ok, filling bool) {
	r := cs.r
	end, ok = r.coveredEnd(pos+1, w)
	if !cs.resume {
		return end, ok, false
	}
	switch {
	case r.verified:
		cs.resume = false
		return end, ok, false
	case ok && pos+1 <= r.readTo:
		// Only what a read reached: the live span's start is not
		// backed yet.
		return min(end, r.readTo), true, true
	}
	return 0, false, true
}

// pass moves a parked, idle cursor past f, just inserted into r after
// the entry at sequence before, when it does not take f and f is the next
// entry it would look at: what its writer would do on waking, done
// without waking it. It reports whether it did; if not, the cursor must be
// woken. It needs r.mu held for writing, which keeps the writer's own
// moves in r out.
func (c *Cursor) pass(r *ring, f *Frame, before, w uint64) bool {
	if !c.parked.Load() || !c.idle.Load() || f.IsGap() || r.stall != 0 {
		return false
	}
	for i := range c.subs {
		cs := &c.subs[i]
		if cs.r != r {
			continue
		}
		if cs.resume || cs.takes(f) {
			return false
		}
		pos := cs.pos.Load()
		if pos < before || pos >= f.Seq {
			return false
		}
		if end, ok := r.coveredEnd(pos+1, w); !ok || end < f.Seq {
			return false
		}
		cs.pos.Store(f.Seq)
		return true
	}
	return false
}

// late returns a frame inserted behind the cursor's position since it
// last looked, if one of its frames was. It needs cs.r.mu.
func (c *Cursor) late(cs *cursorSub) *Frame {
	r := cs.r
	if r.lateGen == cs.lateGen {
		return nil
	}
	for _, l := range r.late {
		if l.gen <= cs.lateGen {
			continue
		}
		cs.lateGen = l.gen
		f := l.f
		if f.Seq <= cs.pos.Load() && cs.takes(f) {
			c.h.stats.late()
			return f
		}
	}
	cs.lateGen = r.lateGen
	return nil
}

func (c *Cursor) setBehind(b bool) {
	if b == c.behind {
		return
	}
	c.behind = b
	if b {
		c.h.behind.Add(1)
	} else {
		c.h.behind.Add(-1)
	}
}

// Park says the cursor found nothing to send: the next change to one of
// its rings calls its waker once. Call Next after Park.
func (c *Cursor) Park() { c.parked.Store(true) }

// Unpark says the cursor found something after all.
func (c *Cursor) Unpark() { c.parked.Store(false) }

func (c *Cursor) wake() {
	if c.parked.CompareAndSwap(true, false) {
		c.waker.Wake()
	}
}

// Position is the highest sequence the cursor has consumed over its
// rings, and the stream epoch it belongs to.
func (c *Cursor) Position() uint64 {
	var p uint64
	for i := range c.subs {
		p = max(p, c.subs[i].pos.Load())
	}
	return p
}

// InMemory reports whether the rings hold everything from the cursor's
// position on (a resume costs no stream read). Call it from the writer.
func (c *Cursor) InMemory() bool {
	w := c.h.water.Load()
	for i := range c.subs {
		cs := &c.subs[i]
		cs.r.mu.RLock()
		_, ok, filling := cs.serves(cs.pos.Load(), w)
		cs.r.mu.RUnlock()
		if !ok || filling {
			return false
		}
	}
	return true
}

func (k Kind) String() string {
	switch k {
	case Wait:
		return "wait"
	case Send:
		return "send"
	case Gap:
		return "gap"
	case Reset:
		return "reset"
	case Behind:
		return "behind"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}
