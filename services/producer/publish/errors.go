package publish

import (
	"errors"
	"fmt"
	"strings"

	"github.com/framecast/framecast/shared/frame"
)

// Sentinel errors; every error a Publisher returns wraps one of them (or
// the context's error), so callers can map them with errors.Is.
var (
	// ErrInvalid is wrapped by errors about a bad batch: an id, the
	// idempotency key, a format, quality, size or an empty batch.
	ErrInvalid = errors.New("invalid batch")
	// ErrFrameTooLarge is wrapped when a frame exceeds Options.MaxFrame,
	// or must travel inline (Options.InlineLimit < 0) and, with its
	// headers, exceeds the broker's maximum message size; also when an
	// event with its headers exceeds that size.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrInvalidEvent is wrapped by errors about an event object: not
	// JSON, not {"event": "<name>", "data": {...}}, a bad name, too large.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrUnavailable is wrapped when the broker cannot be reached or did
	// not store a frame: not connected, no stream, a timeout, a closed
	// connection, or a JetStream error reply.
	ErrUnavailable = errors.New("broker unavailable")
)

// PartialError reports a batch whose publishing stopped part way. The
// frames in Published were stored, in order, and nothing after index
// Failed was sent. When Uncertain is true the frame at index Failed was
// sent but its acknowledgement was lost, so it may have been stored;
// retrying the batch with the same idempotency key settles it without
// duplicates. Indices are in the whole batch: a publish of part of a
// batch (Batch.BatchOffset) covers indices Offset..Offset+Total-1.
type PartialError struct {
	Published []Ack
	Failed    int // batch index of the frame that failed
	Offset    int // batch index of the publish's first frame
	Total     int // frames in the publish
	Uncertain bool
	Err       error
}

func (e *PartialError) Error() string {
	var b strings.Builder
	full := 0
	for _, a := range e.Published {
		if a.Rendition == frame.Full {
			full++
		}
	}
	fmt.Fprintf(&b, "published %d of %d frames", full, e.Total)
	if n := len(e.Published) - full; n > 0 {
		fmt.Fprintf(&b, " and %d previews", n)
	}
	if n := len(e.Published); n > 0 {
		fmt.Fprintf(&b, " (batch_index %d..%d, seq %d..%d)", e.Published[0].BatchIndex, e.Published[n-1].BatchIndex, e.Published[0].Seq, e.Published[n-1].Seq)
	}
	fmt.Fprintf(&b, "; frame %d failed: %v", e.Failed, e.Err)
	if e.Uncertain {
		fmt.Fprintf(&b, "; frame %d may have been stored before the failure", e.Failed)
	}
	if last := e.Offset + e.Total - 1; e.Failed < last {
		fmt.Fprintf(&b, "; frames %d..%d were not sent", e.Failed+1, last)
	}
	return b.String()
}

func (e *PartialError) Unwrap() error { return e.Err }
