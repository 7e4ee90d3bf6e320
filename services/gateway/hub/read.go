package hub

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/subject"
)

// Stream reads fill what rings do not cover: the history before a ring
// was created (a resume from an older sequence), what a ring evicted
// while a slow cursor still needed it, and holes in the live feed. A read
// is shared: one ordered consumer with the filters of up to maxBatch
// rings, whose subjects must not overlap, feeds every cursor of them. At
// most Config.Reads run at once; rings wait their turn in a queue and
// cursors wait on their rings. A read that fails is tried again with
// backoff.

// Backoff of failing reads.
const (
	readRetryWait = 100 * time.Millisecond
	readRetryMax  = 2 * time.Second
)

// queueRead puts rings in the read queue (r.queued was set under r.mu)
// and starts a reader if fewer than Config.Reads run.
func (h *Hub) queueRead(rings ...*ring) {
	if len(rings) == 0 {
		return
	}
	h.readMu.Lock()
	h.queue = append(h.queue, rings...)
	start := h.readers < h.reads
	if start {
		h.readers++
		h.wg.Add(1)
	}
	h.readMu.Unlock()
	if start {
		go h.reader()
	}
}

// reader runs reads until the queue is empty.
func (h *Hub) reader() {
	defer h.wg.Done()
	wait := readRetryWait
	for {
		batch := h.takeBatch()
		if len(batch) == 0 {
			return
		}
		if err := h.read(batch); err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.log.Warn("stream read failed; retrying", "rings", len(batch), "err", err, "retry_in", wait)
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, readRetryMax)
			for _, r := range batch {
				r.mu.Lock()
				queue := r.want != 0 && r.need(r.want)
				r.mu.Unlock()
				if queue {
					h.queueRead(r)
				}
			}
			continue
		}
		wait = readRetryWait
	}
}

// takeBatch takes up to maxBatch queued rings whose filters do not
// overlap; it ends the reader (readers--) when the queue is empty.
func (h *Hub) takeBatch() []*ring {
	h.readMu.Lock()
	defer h.readMu.Unlock()
	var batch []*ring
	rest := h.queue[:0]
	for _, r := range h.queue {
		// A ring is read by one read at a time: one being read stays
		// queued, and the reader running it takes it next.
		r.mu.RLock()
		reading := r.reading
		r.mu.RUnlock()
		if !reading && len(batch) < maxBatch && !overlapsAny(r.filter, batch) {
			batch = append(batch, r)
			continue
		}
		rest = append(rest, r)
	}
	clear(h.queue[len(rest):])
	h.queue = rest
	if len(batch) == 0 {
		h.readers--
	}
	return batch
}

func overlapsAny(filter string, batch []*ring) bool {
	for _, r := range batch {
		if overlap(filter, r.filter) {
			return true
		}
	}
	return false
}

// overlap reports whether some subject matches both filters (tokens
// equal, or either is *; > matches the rest).
func overlap(a, b string) bool {
	for {
		ta, ra, moreA := strings.Cut(a, ".")
		tb, rb, moreB := strings.Cut(b, ".")
		if ta == ">" || tb == ">" {
			return true
		}
		if ta != tb && ta != "*" && tb != "*" {
			return false
		}
		if !moreA || !moreB {
			return moreA == moreB
		}
		a, b = ra, rb
	}
}

// matches reports whether subject subj matches filter.
func matches(filter, subj string) bool {
	for {
		tf, rf, moreF := strings.Cut(filter, ".")
		ts, rs, moreS := strings.Cut(subj, ".")
		if tf == ">" {
			return true
		}
		if tf != ts && tf != "*" {
			return false
		}
		if !moreF || !moreS {
			return moreF == moreS
		}
		filter, subj = rf, rs
	}
}

// batchRing is one ring of a read, and what the read found it needing.
type batchRing struct {
	r        *ring
	healGen  uint64
	liveFrom uint64
	// from is where the read's claim on r starts; evictGen is r's when
	// the read last claimed: an eviction since may have taken what the
	// read inserted, so the claim restarts at the next insert.
	from     uint64
	evictGen uint64
}

// errChunk ends a read that has inserted its share of the budget; the
// rest is read when cursors get there.
var errChunk = errors.New("read chunk full")

// read fills the rings of batch from the lowest sequence they need
// towards the stream's tip: to the tip, or until it has inserted an
// eighth of the budget (a cursor far behind is served chunk by chunk).
func (h *Hub) read(batch []*ring) error {
	var start uint64
	rings := make([]*batchRing, 0, len(batch))
	filters := make([]string, 0, len(batch))
	for _, r := range batch {
		r.mu.Lock()
		r.queued = false
		if r.dropped || r.want == 0 {
			r.mu.Unlock()
			continue
		}
		if start == 0 || r.want < start {
			start = r.want
		}
		r.readFrom = r.want
		r.healUpTo, r.healBlind, r.healFrom = 0, false, 0
		r.want = 0
		r.reading = true
		rings = append(rings, &batchRing{r: r, healGen: r.healGen, liveFrom: r.liveFrom, evictGen: r.evictGen})
		filters = append(filters, r.filter)
		r.mu.Unlock()
	}
	if len(rings) == 0 {
		return nil
	}
	for _, br := range rings {
		br.from = start
	}
	if h.stats.Read != nil {
		h.stats.Read(len(rings))
	}
	epoch := h.epoch.Load()
	ringOf := func(subj string) *batchRing {
		for _, br := range rings {
			if matches(br.r.filter, subj) {
				return br
			}
		}
		return nil
	}
	chunk := max(h.budget/8, 1)
	var inserted int64
	// add puts e (if any) in br's ring and claims the range up to upTo.
	add := func(br *batchRing, e *Frame, upTo uint64) {
		w := h.water.Load()
		r := br.r
		r.mu.Lock()
		var n int64
		if !r.dropped {
			if r.evictGen != br.evictGen {
				br.evictGen = r.evictGen
				switch {
				case e == nil:
					br.from = upTo + 1
				case e.IsGap():
					br.from = e.GapFrom
				default:
					br.from = e.Seq
				}
			}
			if e != nil {
				n = r.insert(e, w)
			}
			r.addSpan(br.from, upTo)
		}
		r.mu.Unlock()
		h.bytes.Add(n)
		inserted += n
		h.wakeAll(r)
	}
	ctx := h.ctx
	h.infoMu.Lock()
	first, tip, st := h.info.First, h.info.Last, h.st
	h.infoMu.Unlock()
	for _, br := range rings {
		tip = max(tip, br.liveFrom-1)
	}
	if first > start {
		// Below the window when the hub last looked: lost.
		for _, br := range rings {
			add(br, gapEntry(start, first-1), first-1)
		}
	}
	last, err := h.source.ReadFrom(ctx, st, tip, filters, max(start, first), func(m jetstream.Msg) error {
		if h.epoch.Load() != epoch {
			return errStale
		}
		if inserted > chunk {
			return errChunk
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		seq := md.Sequence.Stream
		br := ringOf(m.Subject())
		if br == nil {
			return nil
		}
		f, err := entry(seq, m.Subject(), m.Headers(), m.Data())
		if err != nil {
			h.log.Warn("skipping stored message", "subject", m.Subject(), "seq", seq, "err", err)
			add(br, nil, seq)
			return nil
		}
		add(br, f, seq)
		r := br.r
		r.mu.Lock()
		if l, ok := r.last[subject.ToLive(m.Subject())]; !ok || seq > l {
			if ok || len(r.last) < maxTracked {
				r.last[subject.ToLive(m.Subject())] = seq
			}
		}
		r.mu.Unlock()
		return nil
	}, func(from, to uint64) error {
		for _, br := range rings {
			add(br, gapEntry(from, to), to)
		}
		return nil
	})
	partial := errors.Is(err, errChunk)
	if errors.Is(err, errStale) || partial {
		err = nil
	}
	if h.bytes.Load() > h.budget {
		h.evict()
	}
	for _, br := range rings {
		r := br.r
		r.mu.Lock()
		r.reading = false
		switch {
		case h.epoch.Load() != epoch:
		case partial:
			// Stalled and unverified rings go on reading from here;
			// others read again when a cursor reaches what is missing.
			// What a stall guarded up to last is filled.
			if r.stall != 0 && start <= r.stall {
				r.stall = last + 1
			}
			if r.stall != 0 || !r.verified {
				if r.want == 0 || last+1 < r.want {
					r.want = last + 1
				}
			}
			r.failing = time.Time{}
		case err == nil:
			// Everything of the filters up to the tip was delivered:
			// the read reaches the live span.
			from := br.from
			if r.evictGen != br.evictGen {
				from = last + 1
			}
			r.addSpan(from, max(last, r.liveFrom-1))
			// Everything up to last is filled, holes found while the read
			// ran included: what they lost up to last was stored before
			// the read passed it. A hole past last (or a slow consumer's,
			// which may lie anywhere after its start) stalls from there.
			if r.stall != 0 && start <= r.stall {
				switch {
				case r.healGen == br.healGen, !r.healBlind && r.healUpTo <= last:
					r.stall = 0
				default:
					r.stall = max(r.healFrom, last+1)
					if r.want == 0 || r.stall < r.want {
						r.want = r.stall
					}
				}
			}
			r.verified = true
			r.failing = time.Time{}
		default:
			if r.failing.IsZero() {
				r.failing = time.Now()
			}
			if r.want == 0 || last+1 < r.want {
				r.want = max(last+1, start)
			}
		}
		queue := false
		if r.want != 0 && err == nil {
			queue = r.need(r.want)
		}
		r.mu.Unlock()
		if queue {
			h.queueRead(r)
		}
		h.wakeAll(r)
	}
	if err == nil && last > h.water.Load() && h.epoch.Load() == epoch {
		h.barrier(last)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
