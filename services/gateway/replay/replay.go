// Package replay reads a connection's frames back from the OUTPUTS stream:
// in sequence order, filtered to the connection's subjects, at the reader's
// pace, up to the stream's tip.
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Prefetch bounds the messages a reader holds ahead of its caller.
const Prefetch = 8

// Source is one stream.
type Source struct {
	JS     jetstream.JetStream
	Stream string
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

// Read calls fn for every message of filters with a sequence of at least
// start, in order, until it has delivered the last such message stored
// when that message was delivered (the tip). It returns the sequence of
// the last message delivered, or start-1 when there was none. An error
// from fn stops Read and is returned.
func (s Source) Read(ctx context.Context, filters []string, start uint64, fn func(jetstream.Msg) error) (uint64, error) {
	last, err := s.read(ctx, filters, start, false, fn)
	return last, err
}

func (s Source) read(ctx context.Context, filters []string, start uint64, headersOnly bool, fn func(jetstream.Msg) error) (uint64, error) {
	if start == 0 {
		start = 1
	}
	last := start - 1
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
		return last, fmt.Errorf("replay consumer on %s: %w", s.Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = s.JS.DeleteConsumer(dctx, s.Stream, cons.CachedInfo().Name)
		cancel()
	}()
	if cons.CachedInfo().NumPending == 0 {
		return last, nil
	}
	for {
		batch, err := cons.FetchNoWait(Prefetch)
		if err != nil {
			return last, fmt.Errorf("replay on %s after seq %d: %w", s.Stream, last, err)
		}
		n := 0
		done := false
		var ferr error
		for m := range batch.Messages() {
			n++
			if done || ferr != nil {
				continue // drain the batch
			}
			md, err := m.Metadata()
			if err != nil {
				ferr = err
				continue
			}
			if err := fn(m); err != nil {
				ferr = err
				continue
			}
			last = md.Sequence.Stream
			done = md.NumPending == 0
		}
		switch {
		case ferr != nil:
			return last, ferr
		case done:
			return last, nil
		case batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages):
			return last, fmt.Errorf("replay on %s after seq %d: %w", s.Stream, last, batch.Error())
		case n == 0:
			select {
			case <-ctx.Done():
				return last, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// errFull stops a scan once a window holds n messages.
var errFull = errors.New("window full")

// SinceForLast returns the sequence after which the last n messages of
// filters start (so that reading from it+1 yields those n and any newer).
// It scans headers backwards from the tip in windows that grow fourfold,
// so its cost follows how far back the n-th last frame lies, not the
// stream's size. With fewer than n messages it returns first-1.
func (s Source) SinceForLast(ctx context.Context, filters []string, n int) (uint64, error) {
	first, tip, err := s.Bounds(ctx)
	if err != nil {
		return 0, err
	}
	if n <= 0 || tip < first {
		return tip, nil
	}
	span := uint64(max(64, 4*n))
	for {
		start := first
		if tip >= span && tip-span+1 > first {
			start = tip - span + 1
		}
		ring := make([]uint64, 0, n)
		head := 0
		_, err := s.read(ctx, filters, start, true, func(m jetstream.Msg) error {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if md.Sequence.Stream > tip {
				return errFull
			}
			if len(ring) < n {
				ring = append(ring, md.Sequence.Stream)
			} else {
				ring[head] = md.Sequence.Stream
				head = (head + 1) % n
			}
			return nil
		})
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
