package hub

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// span is a range of sequences the ring holds every entry of.
type span struct{ from, to uint64 }

// ring is the gateway's cache of one live subject: the most recent frames
// of the subject in stream-sequence order, and which sequence ranges it
// holds completely (coverage). Cursors read it; the dispatcher appends
// live frames; stream reads fill ranges it does not cover.
//
// Coverage has two parts. The live span runs from liveFrom to the hub's
// watermark (the highest sequence the dispatcher has handed to any ring):
// NATS delivers the republished stream in order, so once the watermark
// passed a sequence, every live frame of this subject up to it is here.
// A hole in a subject's Nats-Last-Sequence chain stalls the live span at
// the first sequence that may be missing, until a stream read fills it.
// Before the live span, spans are ranges that stream reads filled.
type ring struct {
	subject string // the live subject subscribed to
	filter  string // the stream subject it mirrors
	sub     *nats.Subscription
	ready   chan struct{} // closed once the ring's live span start is settled (Hub.Join)

	used atomic.Int64 // the hub's tick when a cursor or frame last used it

	mu       sync.RWMutex
	frames   []*Frame // by Seq
	bytes    int64
	spans    []span // before liveFrom, sorted, disjoint, not adjacent
	liveFrom uint64
	// stall, when nonzero, ends the live span at stall-1: sequences from
	// stall on may be missing until a heal read ends. healGen counts the
	// stalls, so a read knows whether a stall came after it began.
	stall   uint64
	healGen uint64
	// Heals since the running read began: the newest sequence of the
	// holes it may fill, and whether one was blind (no sequence known).
	healUpTo  uint64
	healBlind bool
	healFrom  uint64 // the lowest sequence they may have lost (0: none)
	// suspect, when nonzero, ends the live span at suspect-1 while a
	// stream lookup tells whether the stream was created again (a frame
	// arrived at a sequence already seen, with other contents).
	suspect uint64
	// verified: a stream read has backed the live span's start. A new
	// ring's live span starts after the newest sequence the hub knew of,
	// which may be older than what the stream held when the subscription
	// began: resumes into it read the stream once first.
	verified bool
	// readTo is how far stream reads have filled the live span: it may
	// run ahead of the hub's watermark, which counts live frames only.
	readTo uint64
	// evictGen counts evictions: a read that sees it change covers only
	// what it inserts from then on.
	evictGen uint64
	// last is the last sequence seen per concrete subject, for the
	// Nats-Last-Sequence check.
	last map[string]uint64
	// late lists frames inserted into a range the ring claimed to cover
	// (a hole found after cursors passed it); cursors past them deliver
	// them out of order rather than lose them.
	late    []lateFrame
	lateGen uint64
	members []*Cursor
	dropped bool // unsubscribed: the ring is no longer in the hub

	// Stream reads: want is the lowest sequence a cursor needs read (0:
	// none); queued while the ring waits in the hub's read queue; failing
	// is when reads of it started failing (zero while they work).
	want    uint64
	queued  bool
	reading bool
	// readFrom is where the running read started: it fills what cursors
	// need from there on, so they ask for nothing more meanwhile.
	readFrom uint64
	failing  time.Time
}

type lateFrame struct {
	gen uint64
	f   *Frame
}

// maxLate bounds the late frames a ring remembers.
const maxLate = 64

// liveEnd is the end of the live span given the hub's watermark w. It
// needs r.mu.
func (r *ring) liveEnd(w uint64) uint64 {
	w = max(w, r.readTo)
	if r.stall != 0 && r.stall-1 < w {
		w = r.stall - 1
	}
	if r.suspect != 0 && r.suspect-1 < w {
		w = r.suspect - 1
	}
	return w
}

// coveredEnd returns the end of the covered range that holds sequence p,
// or false when p is not covered (a stream read must fill it). In the
// live span the end may be p-1: nothing after p is known yet. It needs
// r.mu.
func (r *ring) coveredEnd(p, w uint64) (uint64, bool) {
	if p >= r.liveFrom {
		return max(r.liveEnd(w), p-1), true
	}
	i, found := slices.BinarySearchFunc(r.spans, p, func(s span, p uint64) int {
		switch {
		case s.to < p:
			return -1
		case s.from > p:
			return 1
		}
		return 0
	})
	if !found {
		_ = i
		return 0, false
	}
	return r.spans[i].to, true
}

// covered reports whether the ring claims sequence seq. It needs r.mu.
func (r *ring) covered(seq, w uint64) bool {
	end, ok := r.coveredEnd(seq, w)
	return ok && end >= seq
}

// addSpan marks from..to as covered. It needs r.mu held for writing.
func (r *ring) addSpan(from, to uint64) {
	if from > to {
		return
	}
	if to+1 >= r.liveFrom {
		r.readTo = max(r.readTo, to)
		if from < r.liveFrom {
			r.liveFrom = from
		}
		// Spans now inside the live span go.
		r.spans = slices.DeleteFunc(r.spans, func(s span) bool { return s.from >= r.liveFrom })
		if n := len(r.spans); n > 0 && r.spans[n-1].to+1 >= r.liveFrom {
			r.liveFrom = min(r.liveFrom, r.spans[n-1].from)
			r.spans = r.spans[:n-1]
		}
		return
	}
	merged := span{from, to}
	out := r.spans[:0:0]
	for _, s := range r.spans {
		if s.to+1 < merged.from || s.from > merged.to+1 {
			out = append(out, s)
			continue
		}
		merged.from, merged.to = min(merged.from, s.from), max(merged.to, s.to)
	}
	i, _ := slices.BinarySearchFunc(out, merged.from, func(s span, p uint64) int {
		if s.from < p {
			return -1
		}
		return 1
	})
	r.spans = slices.Insert(out, i, merged)
}

// find returns the index of the first entry with a sequence above seq. It
// needs r.mu.
func (r *ring) find(seq uint64) int {
	i, _ := slices.BinarySearchFunc(r.frames, seq+1, func(f *Frame, s uint64) int {
		switch {
		case f.Seq < s:
			return -1
		case f.Seq > s:
			return 1
		}
		return 0
	})
	return i
}

// has reports whether the ring holds an entry with sequence seq. It needs
// r.mu.
func (r *ring) has(seq uint64) bool { return r.at(seq) != nil }

// at returns the entry with sequence seq, or nil. It needs r.mu.
func (r *ring) at(seq uint64) *Frame {
	i := r.find(seq - 1)
	if i < len(r.frames) && r.frames[i].Seq == seq {
		return r.frames[i]
	}
	return nil
}

// insert adds f in sequence order unless an entry with its sequence is
// there; it reports the bytes added. A frame inserted where the ring
// claimed coverage goes to the late list too. It needs r.mu held for
// writing.
func (r *ring) insert(f *Frame, w uint64) int64 {
	i := r.find(f.Seq - 1)
	if i < len(r.frames) && r.frames[i].Seq == f.Seq {
		return 0
	}
	if i < len(r.frames) && !f.IsGap() && r.covered(f.Seq, w) {
		r.lateGen++
		r.late = append(r.late, lateFrame{r.lateGen, f})
		if len(r.late) > maxLate {
			r.late = slices.Delete(r.late, 0, len(r.late)-maxLate)
		}
	}
	if i == len(r.frames) {
		r.frames = append(r.frames, f)
	} else {
		r.frames = slices.Insert(r.frames, i, f)
	}
	n := int64(f.Size())
	r.bytes += n
	return n
}

// maxSpans bounds the covered ranges a ring remembers before its live
// span; the oldest go first (a resume into them reads the stream).
const maxSpans = 1024

// evict drops entries until the ring holds at most keep bytes or only its
// newest entry, and reports the bytes freed. It needs r.mu held for
// writing, and the hub's mu (the members' positions).
//
// What goes first is what is needed least: entries every member has
// consumed; then entries the furthest member has consumed, newest first
// (only members behind it need them, and only once they get there: the
// frames just ahead of a slow member stay); then the oldest.
func (r *ring) evict(keep int64) int64 {
	if r.bytes <= keep || len(r.frames) <= 1 {
		return 0
	}
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, c := range r.members {
		for i := range c.subs {
			if c.subs[i].r == r {
				p := c.subs[i].pos.Load()
				lo, hi = min(lo, p), max(hi, p)
			}
		}
	}
	var freed int64
	drop := func(i int) {
		f := r.frames[i]
		r.frames = slices.Delete(r.frames, i, i+1)
		n := int64(f.Size())
		r.bytes -= n
		freed += n
		r.uncover(f.Seq)
	}
	for r.bytes > keep && len(r.frames) > 1 && r.frames[0].Seq <= lo {
		drop(0)
	}
	for r.bytes > keep && len(r.frames) > 1 {
		// The newest entry the furthest member consumed, short of the
		// newest of all.
		i := min(r.find(hi)-1, len(r.frames)-2)
		if i < 0 || r.frames[i].Seq <= lo {
			break
		}
		drop(i)
	}
	for r.bytes > keep && len(r.frames) > 1 {
		drop(0)
	}
	if len(r.frames) > 0 {
		// Ranges below every entry hold nothing a cursor could still be
		// sent; past maxSpans the oldest are forgotten too.
		first := r.frames[0].Seq
		r.spans = slices.DeleteFunc(r.spans, func(s span) bool { return s.to < first && s.to < lo })
	}
	if n := len(r.spans); n > maxSpans {
		r.spans = slices.Delete(r.spans, 0, n-maxSpans)
	}
	return freed
}

// uncover removes sequence seq from the ring's coverage (its entry was
// evicted). It needs r.mu held for writing.
func (r *ring) uncover(seq uint64) {
	r.evictGen++
	if seq >= r.liveFrom {
		if seq > r.liveFrom {
			r.spans = append(r.spans, span{r.liveFrom, seq - 1})
		}
		r.liveFrom = seq + 1
		return
	}
	for i, s := range r.spans {
		if seq < s.from || seq > s.to {
			continue
		}
		var parts []span
		if s.from < seq {
			parts = append(parts, span{s.from, seq - 1})
		}
		if seq < s.to {
			parts = append(parts, span{seq + 1, s.to})
		}
		r.spans = slices.Replace(r.spans, i, i+1, parts...)
		return
	}
}

// need asks for a stream read from seq. It needs r.mu held for writing;
// the caller queues the ring (Hub.queueRead) after unlocking.
func (r *ring) need(seq uint64) bool {
	if r.reading && r.readFrom <= seq {
		return false // the running read gets there; its end wakes the cursors
	}
	if r.want == 0 || seq < r.want {
		r.want = seq
	}
	if r.queued || r.dropped {
		return false
	}
	r.queued = true
	return true
}

// clear empties the ring for a new stream epoch: it covers nothing and
// stalls at 1 until a read from the new stream's start fills it. It needs
// r.mu held for writing; it reports the bytes freed.
func (r *ring) clear() int64 {
	n := r.bytes
	clear(r.frames)
	r.frames, r.bytes, r.spans = r.frames[:0], 0, nil
	r.liveFrom, r.stall, r.suspect = 1, 1, 0
	r.healGen++
	r.verified = false
	r.readTo = 0
	r.evictGen++
	clear(r.last)
	r.late = nil
	return n
}
