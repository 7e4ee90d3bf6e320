// Package replay reads a connection's frames back from the OUTPUTS stream:
// in sequence order, filtered to the connection's subjects, at the reader's
// pace, up to the stream's tip. It also reads the images of frames sent by
// reference from the stream's large-frame bucket.
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/stream"
)

// Prefetch bounds the messages a reader holds ahead of its caller.
const Prefetch = 8

// Source is one stream and its large-frame bucket.
type Source struct {
	JS     jetstream.JetStream
	Stream string
	// Bucket is the large-frame Object Store bucket; "" means the default
	// for Stream (stream.Config.Bucket).
	Bucket string
	// ReplicaLag, if set, is called each time a read finds its consumer's
	// replica behind the stream's leader and waits for it (see lag).
	ReplicaLag func()
}

func (s Source) bucket() string {
	if s.Bucket != "" {
		return s.Bucket
	}
	c, _ := stream.Config{Name: s.Stream}.WithDefaults()
	return c.Bucket
}

// Bounds returns the stream's first and last sequences. An empty stream
// has first = last+1.
func (s Source) Bounds(ctx context.Context) (first, last uint64, err error) {
	st, err := s.JS.Stream(ctx, s.Stream)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", s.Stream, err)
	}
	info := st.CachedInfo()
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// ReadFrom calls fn for every message of filters with a sequence of at
// least start, in order, until it has delivered the last such message
// stored when that message was delivered (the tip), or until no message is
// pending any more (the rest left the stream). It returns the sequence of
// the last message delivered, or start-1 when there was none. An error
// from fn stops the read and is returned.
//
// gap, if set, is called before the next message for the sequences the
// read skipped because they left the stream (age, limits, purge) before
// the read reached them. from..to holds every such sequence of filters,
// and may hold other subjects' sequences removed with them. An error from
// gap stops the read and is returned.
//
// st is the caller's lookup of the stream (the read makes none of its
// own): on a replicated stream the read also delivers every message of
// filters up to tip, the newest sequence the caller knows the stream
// holds, however far its consumer's replica lags (see lag).
func (s Source) ReadFrom(ctx context.Context, st jetstream.Stream, tip uint64, filters []string, start uint64, fn func(jetstream.Msg) error, gap func(from, to uint64) error) (uint64, error) {
	if start == 0 {
		start = 1
	}
	l := &lag{}
	if st != nil && st.CachedInfo().Config.Replicas > 1 {
		l = &lag{st: st, filters: filters, tip: tip, onLag: s.ReplicaLag}
	}
	return s.readWith(ctx, l, filters, start, false, fn, gap)
}

// errLostDelivery stops one consumer's read when it delivered messages the
// read never received.
var errLostDelivery = errors.New("consumer delivered messages that never arrived")

func (s Source) read(ctx context.Context, filters []string, start uint64, headersOnly bool, fn func(jetstream.Msg) error, gap func(from, to uint64) error) (uint64, error) {
	if start == 0 {
		start = 1
	}
	lag, err := s.lagCheck(ctx, filters)
	if err != nil {
		return start - 1, err
	}
	return s.readWith(ctx, lag, filters, start, headersOnly, fn, gap)
}

func (s Source) readWith(ctx context.Context, lag *lag, filters []string, start uint64, headersOnly bool, fn func(jetstream.Msg) error, gap func(from, to uint64) error) (uint64, error) {
	last := start - 1
	for {
		l, next, err := s.readFrom(ctx, filters, start, headersOnly, fn, gap, lag)
		last = max(last, l)
		if !errors.Is(err, errLostDelivery) {
			return last, err
		}
		start = next
	}
}

// readFrom is read with one consumer from start. With errLostDelivery it
// returns the sequence to read again from (next).
//
// The consumer acknowledges nothing (AckNone), so a message it delivered
// counts as read whether or not it arrived: one sent for a pull that had
// already ended on this side (a no-wait pull answered late by a busy
// replica) is lost to the read. Each message carries the consumer's
// delivery sequence, and a jump in it (or a consumer that has delivered
// more than arrived) shows such a loss; the read then starts a new
// consumer at the first message it did not get.
func (s Source) readFrom(ctx context.Context, filters []string, start uint64, headersOnly bool, fn func(jetstream.Msg) error, gap func(from, to uint64) error, lag *lag) (last, next uint64, err error) {
	last = start - 1
	// A plain AckNone consumer read with no-wait pulls: each pull returns
	// what is stored now, so reaching the tip never waits on a heartbeat.
	cons, err := s.JS.CreateConsumer(ctx, s.Stream, jetstream.ConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       headersOnly,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return last, start, fmt.Errorf("replay consumer on %s: %w", s.Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = s.JS.DeleteConsumer(dctx, s.Stream, cons.CachedInfo().Name)
		cancel()
	}()
	next = start         // the sequence after the last one read
	var delivered uint64 // the consumer's delivery sequence of the last message received
	// done ends the read when nothing more is pending on the consumer's
	// replica, unless the leader holds a message it has not yet applied.
	done := func() (bool, error) {
		if behind, err := lag.behind(ctx, next); behind || err != nil {
			return false, err
		}
		// The window may have passed next since the read began.
		return true, s.tailGap(ctx, next, gap)
	}
	if cons.CachedInfo().NumPending == 0 {
		if ok, err := done(); ok || err != nil {
			return last, next, err
		}
	}
	msgs := make([]jetstream.Msg, 0, Prefetch)
	for {
		batch, err := cons.FetchNoWait(Prefetch)
		if err != nil {
			return last, next, fmt.Errorf("replay on %s after seq %d: %w", s.Stream, last, err)
		}
		msgs = msgs[:0]
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		n := len(msgs)
		// The sequences a jump skips are other subjects', unless the
		// window's start has passed them.
		var first uint64
		if gap != nil && jumps(msgs, next) {
			if first, _, err = s.Bounds(ctx); err != nil {
				return last, next, err
			}
		}
		end := false
		var ferr error
		for _, m := range msgs {
			md, err := m.Metadata()
			if err != nil {
				ferr = err
				break
			}
			if md.Sequence.Consumer != delivered+1 {
				ferr = errLostDelivery
				break
			}
			delivered = md.Sequence.Consumer
			if seq := md.Sequence.Stream; seq > next && first > next {
				if err := gap(next, min(first, seq)-1); err != nil {
					ferr = err
					break
				}
			}
			next = md.Sequence.Stream + 1
			if err := fn(m); err != nil {
				ferr = err
				break
			}
			last = md.Sequence.Stream
			// The batch is read to its end: messages stored while it was
			// being delivered may follow one that had nothing pending,
			// and the consumer counts them as delivered.
			end = md.NumPending == 0
		}
		if ferr != nil {
			return last, next, ferr
		}
		if end {
			if behind, err := lag.behind(ctx, next); err != nil || !behind {
				return last, next, err
			}
			continue
		}
		switch {
		case batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages):
			return last, next, fmt.Errorf("replay on %s after seq %d: %w", s.Stream, last, batch.Error())
		case n == 0:
			// Nothing came although messages were pending: they may have
			// left the stream (age, limits, purge) since. The read is done
			// when none are pending any more.
			info, err := cons.Info(ctx)
			if err != nil {
				return last, next, fmt.Errorf("replay on %s after seq %d: %w", s.Stream, last, err)
			}
			if info.Delivered.Consumer > delivered {
				return last, next, errLostDelivery
			}
			if info.NumPending == 0 {
				if ok, err := done(); ok || err != nil {
					return last, next, err
				}
			}
			select {
			case <-ctx.Done():
				return last, next, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// tailGap ends a read that has nothing more to deliver: when gap is set
// and the stream's window now starts after next, the sequences from next
// on left the stream before the read reached them.
func (s Source) tailGap(ctx context.Context, next uint64, gap func(from, to uint64) error) error {
	if gap == nil {
		return nil
	}
	first, _, err := s.Bounds(ctx)
	if err != nil {
		return err
	}
	if first > next {
		return gap(next, first-1)
	}
	return nil
}

// MaxLag bounds how long a read waits for its consumer's replica to apply
// what the stream's leader has stored; the read then fails, and a new
// read (a new consumer, perhaps on another replica) may be tried.
const MaxLag = 10 * time.Second

// lag watches a read's consumer for a replica that lags the leader.
//
// JetStream places a read's consumer (R1) on any replica of a replicated
// stream, and the consumer sees only what its replica has applied: one
// that lags reports nothing pending while the leader already holds newer
// messages, which a read that stopped there would never deliver (the
// client's live frames start after them). So a read of a replicated
// stream ends only when the leader, asked for the next message of each
// filter, holds none up to the stream's last sequence when the read
// began (tip); later messages reach the caller live.
type lag struct {
	st      jetstream.Stream // nil: one replica, nothing to check
	filters []string
	tip     uint64
	at      uint64    // the next sequence the consumer was behind at
	since   time.Time // when it was first seen behind there
	onLag   func()    // Source.ReplicaLag
}

func (s Source) lagCheck(ctx context.Context, filters []string) (*lag, error) {
	st, err := s.JS.Stream(ctx, s.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.Stream, err)
	}
	info := st.CachedInfo()
	if info.Config.Replicas <= 1 {
		return &lag{}, nil
	}
	return &lag{st: st, filters: filters, tip: info.State.LastSeq, onLag: s.ReplicaLag}, nil
}

// behind reports whether the leader holds a message of the filters with a
// sequence in next..tip. It fails once the consumer has been behind for
// MaxLag.
func (l *lag) behind(ctx context.Context, next uint64) (bool, error) {
	if l.st == nil || next > l.tip {
		return false, nil
	}
	for _, f := range l.filters {
		m, err := l.st.GetMsg(ctx, next, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("next message of %s from seq %d: %w", f, next, err)
		}
		if m.Sequence <= l.tip {
			if l.at != next {
				l.at, l.since = next, time.Now()
				if l.onLag != nil {
					l.onLag()
				}
			} else if time.Since(l.since) > MaxLag {
				return false, fmt.Errorf("the consumer's replica has not applied seq %d, which the leader stored, in %v", m.Sequence, MaxLag)
			}
			return true, nil
		}
	}
	return false, nil
}

// jumps reports whether the sequences of msgs, read after next-1, skip
// any.
func jumps(msgs []jetstream.Msg, next uint64) bool {
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return false
		}
		if md.Sequence.Stream > next {
			return true
		}
		next = md.Sequence.Stream + 1
	}
	return false
}

// errFull stops a scan once a window holds n messages.
var errFull = errors.New("window full")

// Renditions picks the renditions (frame.Rendition) of images a
// connection takes.
type Renditions uint8

const (
	// FullOnly takes the images as published (the default).
	FullOnly Renditions = iota
	// PreviewsOnly takes previews only.
	PreviewsOnly
	// AllRenditions takes both, each preview before its full frame.
	AllRenditions
)

// Takes reports whether a frame of rendition r is taken.
func (rs Renditions) Takes(r frame.Rendition) bool {
	switch rs {
	case PreviewsOnly:
		return r == frame.Preview
	case AllRenditions:
		return true
	}
	return r == frame.Full
}

// SinceForLast returns the sequence after which the last n frames of
// filters a connection taking rs is sent start (so that reading from it+1
// yields those n and any newer). With AllRenditions it counts full frames,
// each starting at its preview (the preview just before it on its
// subject), so the oldest frame's preview comes too. It scans headers
// backwards from the tip in windows that grow fourfold, so its cost
// follows how far back the n-th last frame lies, not the stream's size.
// With fewer than n frames it returns first-1.
func (s Source) SinceForLast(ctx context.Context, filters []string, n int, rs Renditions) (uint64, error) {
	previews, withPreviews := rs == PreviewsOnly, rs == AllRenditions
	first, tip, err := s.Bounds(ctx)
	if err != nil {
		return 0, err
	}
	if n <= 0 || tip < first || tip == 0 {
		return tip, nil // nothing stored (a new stream has first 0)
	}
	span := uint64(max(64, 4*n))
	for {
		start := first
		if tip >= span && tip-span+1 > first {
			start = tip - span + 1
		}
		ring := make([]uint64, 0, n)
		head := 0
		seen := map[string]uint64{} // withPreviews: subject -> the preview just seen on it
		_, err := s.read(ctx, filters, start, true, func(m jetstream.Msg) error {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			seq := md.Sequence.Stream
			if seq > tip {
				return errFull
			}
			isPreview := m.Headers().Get(frame.HeaderRendition) == frame.Preview.String()
			switch {
			case isPreview && withPreviews:
				seen[m.Subject()] = seq
				return nil
			case isPreview != previews:
				return nil
			case withPreviews:
				if p, ok := seen[m.Subject()]; ok {
					seq = p
					delete(seen, m.Subject())
				}
			}
			if len(ring) < n {
				ring = append(ring, seq)
			} else {
				ring[head] = seq
				head = (head + 1) % n
			}
			return nil
		}, nil)
		if err != nil && !errors.Is(err, errFull) {
			return 0, err
		}
		if len(ring) == n {
			return ring[head] - 1, nil
		}
		if start == first {
			return first - 1, nil
		}
		span *= 4
	}
}
