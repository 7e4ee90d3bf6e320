package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"

	"github.com/framecast/framecast/services/gateway/zerocopy"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// Frame is one entry of a ring: a stored frame, or a gap entry standing
// for sequences that left the stream's window before they could be read.
// A frame is shared by every cursor: read it, never modify it.
type Frame struct {
	Seq uint64 // stream sequence (a gap entry: the last sequence lost)
	// Client is the client token of the frame's subject
	// (subject.Broadcast for a broadcast).
	Client string
	// GapFrom is nonzero for a gap entry: sequences GapFrom..Seq are lost.
	GapFrom uint64
	// Event is the name of a ComfyUI execution event (NewEvent); its
	// image is the event's JSON object, sent as a text message.
	Event     string
	eventData json.RawMessage
	Meta      frame.Meta

	mu     sync.Mutex
	image  []byte
	native []byte
	comfy  []byte
	// The same as whole websocket messages in a zero-copy arena (Span).
	nativeSpan, comfySpan *zerocopy.Span
	// For a frame sent by reference: whether its image is here, or known
	// to be gone, and the channel closed when a running fetch ends.
	loaded   bool
	gone     error
	fetching chan struct{}
}

// NewFrame returns a frame with the image img (empty for a frame sent by
// reference).
func NewFrame(seq uint64, client string, meta frame.Meta, img []byte) *Frame {
	return &Frame{Seq: seq, Client: client, Meta: meta, image: img, loaded: meta.Object == ""}
}

// NewEvent returns the ring entry of a stored event, or an error when
// body is no event object (wire.DecodeEvent).
func NewEvent(seq uint64, client string, body []byte) (*Frame, error) {
	e, err := wire.DecodeEvent(body)
	if err != nil {
		return nil, err
	}
	return &Frame{Seq: seq, Client: client, Event: e.Event, eventData: e.Data, image: body, loaded: true}, nil
}

// same reports whether g is f again (the same stored message delivered
// twice), not another message at the same sequence (a stream created
// again).
func (f *Frame) same(g *Frame) bool {
	if f.IsGap() || g.IsGap() {
		return true // nothing to compare
	}
	if f.Event != "" || g.Event != "" {
		return f.Event == g.Event && bytes.Equal(f.image, g.image)
	}
	return f.Client == g.Client && f.Meta == g.Meta && f.Size() == g.Size()
}

// IsEvent reports whether f is an event; its wire bytes are text.
func (f *Frame) IsEvent() bool { return f.Event != "" }

// gapEntry is the ring entry for sequences from..to that left the stream.
func gapEntry(from, to uint64) *Frame {
	return &Frame{Seq: to, GapFrom: from, loaded: true}
}

// IsGap reports whether f is a gap entry.
func (f *Frame) IsGap() bool { return f.GapFrom != 0 }

// ErrGone is wrapped by Fetch errors meaning the object no longer exists;
// Resolve remembers them.
var ErrGone = errors.New("object gone")

// UnknownSize is what Size counts for a frame sent by reference whose
// reference does not state the image's size.
const UnknownSize = 1 << 20

// Size is the image's size in bytes, known before the image is resolved.
func (f *Frame) Size() int {
	switch {
	case f.GapFrom != 0:
		return 64
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
	switch {
	case f.native != nil || !f.loaded:
	case f.Event != "":
		f.native = wire.EncodeEvent(f.Seq, f.Event, f.eventData)
	default:
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
	if f.Event != "" {
		return f.image // the event as the producer took it
	}
	if f.comfy == nil && f.loaded {
		b, err := wire.EncodeComfy(f.Meta.OutputID, f.Meta.Format, f.image)
		if err != nil {
			return nil
		}
		f.comfy = b
	}
	return f.comfy
}

// Span returns the frame's native message (comfy: its ComfyDeploy
// message), as a whole websocket binary message with its header, in a:
// built on first use and sent to every connection from there. It returns
// nil for an event or gap, a frame whose image is not here, a frame the
// ComfyDeploy format cannot express, or when a cannot take it (the
// caller sends the bytes instead).
func (f *Frame) Span(a *zerocopy.Arena, comfy bool) *zerocopy.Span {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Event != "" || f.GapFrom != 0 || !f.loaded || f.image == nil {
		return nil
	}
	slot := &f.nativeSpan
	if comfy {
		slot = &f.comfySpan
	}
	if *slot != nil {
		return *slot
	}
	var prefix []byte
	if comfy {
		var err error
		if prefix, err = wire.ComfyPrefix(f.Meta.OutputID, f.Meta.Format, 0); err != nil {
			return nil
		}
	} else {
		prefix = wire.NativePrefix(wire.HeaderOf(f.Seq, f.Meta), 0)
	}
	sp, err := a.Put(binaryHeader(len(prefix)+len(f.image)), prefix, f.image)
	if err != nil {
		return nil
	}
	*slot = sp
	return sp
}

// binaryHeader is a server's websocket frame header for a whole binary
// message of n bytes (RFC 6455 section 5.2: final, unmasked).
func binaryHeader(n int) []byte {
	switch {
	case n < 126:
		return []byte{0x82, byte(n)}
	case n <= 0xffff:
		return []byte{0x82, 126, byte(n >> 8), byte(n)}
	default:
		h := []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		return h
	}
}
