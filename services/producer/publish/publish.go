// Package publish sends images to framecast. It encodes images as the
// seed ComfyUI node does (see package encode) and publishes each frame of
// a batch, in batch order, as one JetStream message on
// subject.Frames(output_id, client_id) with frame.Meta in its headers. The
// producer's HTTP API publishes through this package; other Go programs can
// import it to publish without HTTP.
//
// A batch is published frame by frame. If publishing stops part way, the
// error is a *PartialError that says exactly which frames were stored. With
// an idempotency key every frame carries Nats-Msg-Id "<key>/<batch_index>",
// so a retry within the stream's duplicate window stores nothing twice and
// gets back the sequences of the first attempt.
package publish

import (
	"context"
	"errors"
	"fmt"
	"image"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// Defaults of a Batch's zero fields.
const (
	DefaultFormat  = frame.WEBP
	DefaultQuality = 80
)

// DefaultTimeout bounds one frame's publish when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// MaxKey is the longest idempotency key, in bytes.
const MaxKey = 128

// Options tune a Publisher. The zero value is usable.
type Options struct {
	// Timeout bounds each frame's publish and acknowledgement; default
	// DefaultTimeout. A deadline on ctx that is sooner wins.
	Timeout time.Duration
	// MaxPayload is the largest message, headers included, to send. Zero
	// means the connected server's max_payload. A larger frame fails with
	// ErrFrameTooLarge before anything of its batch is published.
	MaxPayload int64
}

// Publisher publishes batches on one JetStream context. It is safe for
// concurrent use and owns no goroutines.
type Publisher struct {
	js   jetstream.JetStream
	opts Options
}

// New returns a Publisher on js. The stream that captures subject.All
// (see package stream) must exist for publishes to succeed.
func New(js jetstream.JetStream, opts Options) *Publisher {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Publisher{js: js, opts: opts}
}

// Batch is a batch of images to encode and publish. Set exactly one of
// Images and Pixels.
type Batch struct {
	OutputID string // 1..24 bytes of printable ASCII
	ClientID string // 0..128 bytes of printable ASCII; "" broadcasts
	Images   []image.Image
	Pixels   []encode.Pixels
	Format   frame.Format // default WEBP
	Quality  int          // 1..100, default 80; PNG ignores it
	// IdempotencyKey, when set, makes a retry of the same batch within the
	// stream's duplicate window publish nothing twice. It is 1..128 bytes of
	// printable ASCII and unique per stream, not per output: use a fresh
	// random key (a UUID) per batch.
	IdempotencyKey string
}

// Frame is one encoded image.
type Frame struct {
	Data          []byte
	Format        frame.Format
	Width, Height int
}

// EncodedBatch is a batch of already encoded images.
type EncodedBatch struct {
	OutputID, ClientID string
	Frames             []Frame
	IdempotencyKey     string // as Batch.IdempotencyKey
}

// Ack is the outcome of one published frame.
type Ack struct {
	Seq           uint64 // stream sequence
	BatchIndex    int
	Format        frame.Format
	Width, Height int
	Bytes         int // size of the encoded image
	// Duplicate is true when the stream already held this frame under the
	// same idempotency key; Seq is then the sequence it was stored at.
	Duplicate bool
}

// Images encodes b (see Encode) and publishes it (see Encoded).
func (p *Publisher) Images(ctx context.Context, b Batch) ([]Ack, error) {
	eb, err := Encode(ctx, b)
	if err != nil {
		return nil, err
	}
	return p.Encoded(ctx, eb)
}

// Encode validates b and encodes its images in parallel (encode.Batch),
// returning them in batch order. Errors about the input wrap ErrInvalid and
// the encode package's sentinel (encode.ErrTooLarge for an image over a
// format's limits).
func Encode(ctx context.Context, b Batch) (EncodedBatch, error) {
	if b.Format == 0 {
		b.Format = DefaultFormat
	}
	if b.Quality == 0 {
		b.Quality = DefaultQuality
	}
	if err := checkIDs(b.OutputID, b.ClientID, b.IdempotencyKey); err != nil {
		return EncodedBatch{}, err
	}
	imgs := b.Images
	switch {
	case len(b.Images) > 0 && len(b.Pixels) > 0:
		return EncodedBatch{}, fmt.Errorf("%w: both Images and Pixels are set; set one", ErrInvalid)
	case len(b.Pixels) > 0:
		imgs = make([]image.Image, len(b.Pixels))
		for i, px := range b.Pixels {
			m, err := encode.Image(px)
			if err != nil {
				return EncodedBatch{}, fmt.Errorf("%w: image %d: %w", ErrInvalid, i, err)
			}
			imgs[i] = m
		}
	}
	if err := checkSize(len(imgs)); err != nil {
		return EncodedBatch{}, err
	}
	data, err := encode.Batch(ctx, imgs, b.Format, b.Quality)
	if err != nil {
		if ctx.Err() != nil {
			return EncodedBatch{}, err
		}
		return EncodedBatch{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	eb := EncodedBatch{OutputID: b.OutputID, ClientID: b.ClientID, IdempotencyKey: b.IdempotencyKey, Frames: make([]Frame, len(imgs))}
	for i, m := range imgs {
		r := m.Bounds()
		eb.Frames[i] = Frame{Data: data[i], Format: b.Format, Width: r.Dx(), Height: r.Dy()}
	}
	return eb, nil
}

// Encoded publishes already encoded frames in batch order. A frame whose
// Format, Width or Height is zero is probed (encode.Probe, a full decode)
// to fill them; otherwise the caller's values are trusted. Everything is
// checked, including every frame's size against the broker's limit, before
// the first frame is sent.
//
// If publishing stops part way the error is a *PartialError; it wraps
// ErrUnavailable for broker failures, or ctx's error.
func (p *Publisher) Encoded(ctx context.Context, eb EncodedBatch) ([]Ack, error) {
	if err := checkIDs(eb.OutputID, eb.ClientID, eb.IdempotencyKey); err != nil {
		return nil, err
	}
	if err := checkSize(len(eb.Frames)); err != nil {
		return nil, err
	}
	nc := p.js.Conn()
	limit := p.opts.MaxPayload
	if limit == 0 {
		limit = nc.MaxPayload()
	}
	subj := subject.Frames(eb.OutputID, eb.ClientID)
	now := time.Now().UnixMilli()
	msgs := make([]*nats.Msg, len(eb.Frames))
	for i := range eb.Frames {
		f := &eb.Frames[i]
		if f.Format == 0 || f.Width == 0 || f.Height == 0 {
			in, err := encode.Probe(f.Data)
			if err != nil {
				return nil, fmt.Errorf("%w: frame %d: %w", ErrInvalid, i, err)
			}
			f.Format, f.Width, f.Height = in.Format, in.Width, in.Height
		}
		meta := frame.Meta{
			OutputID: eb.OutputID, ClientID: eb.ClientID, Format: f.Format,
			Width: f.Width, Height: f.Height,
			BatchIndex: i, BatchSize: len(eb.Frames), Timestamp: now,
		}
		if err := meta.Validate(); err != nil {
			return nil, fmt.Errorf("%w: frame %d: %w", ErrInvalid, i, err)
		}
		m := &nats.Msg{Subject: subj, Header: nats.Header{}, Data: f.Data}
		meta.Header(m.Header)
		if eb.IdempotencyKey != "" {
			m.Header.Set(jetstream.MsgIDHeader, MsgID(eb.IdempotencyKey, i))
		}
		if limit > 0 {
			if size := int64(len(f.Data) + headerSize(m.Header)); size > limit {
				return nil, fmt.Errorf("%w: frame %d is %d bytes with headers; the broker accepts at most %d bytes per message",
					ErrFrameTooLarge, i, size, limit)
			}
		}
		msgs[i] = m
	}
	if !nc.IsConnected() {
		return nil, &PartialError{Failed: 0, Total: len(msgs), Err: fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, nc.Status())}
	}
	acks := make([]Ack, 0, len(msgs))
	for i, m := range msgs {
		pctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
		pa, err := p.js.PublishMsg(pctx, m, jetstream.WithRetryAttempts(0))
		cancel()
		if err != nil {
			err, uncertain := classify(ctx, err)
			return nil, &PartialError{Published: acks, Failed: i, Total: len(msgs), Uncertain: uncertain, Err: err}
		}
		f := eb.Frames[i]
		acks = append(acks, Ack{
			Seq: pa.Sequence, BatchIndex: i, Format: f.Format,
			Width: f.Width, Height: f.Height, Bytes: len(f.Data), Duplicate: pa.Duplicate,
		})
	}
	return acks, nil
}

// classify maps a publish error to ErrUnavailable (or ctx's error) and
// reports whether the frame may have been stored anyway.
func classify(ctx context.Context, err error) (error, bool) {
	if ctx.Err() != nil {
		return fmt.Errorf("publish: %w", context.Cause(ctx)), true
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Errorf("%w: no stream accepts the subject (the stream is missing or has no leader): %v", ErrUnavailable, err), false
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrDisconnected):
		return fmt.Errorf("%w: not connected to NATS: %v", ErrUnavailable, err), false
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %v", ErrFrameTooLarge, err), false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: no acknowledgement in time: %v", ErrUnavailable, err), true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return fmt.Errorf("%w: the stream refused the frame: %v", ErrUnavailable, err), false
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err), true
}

// MsgID is the Nats-Msg-Id of frame i of a batch published with key.
func MsgID(key string, i int) string { return key + "/" + strconv.Itoa(i) }

// ValidateKey checks an idempotency key: 1..128 bytes of printable ASCII.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: idempotency key is empty; allowed: 1..%d bytes of printable ASCII", ErrInvalid, MaxKey)
	}
	if len(key) > MaxKey {
		return fmt.Errorf("%w: idempotency key is %d bytes; allowed: 1..%d bytes of printable ASCII", ErrInvalid, len(key), MaxKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7E {
			return fmt.Errorf("%w: idempotency key has byte 0x%02X at offset %d; allowed: 1..%d bytes of printable ASCII", ErrInvalid, c, i, MaxKey)
		}
	}
	return nil
}

func checkIDs(oid, cid, key string) error {
	if err := subject.ValidateOutputID(oid); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := subject.ValidateClientID(cid); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if key != "" {
		return ValidateKey(key)
	}
	return nil
}

func checkSize(n int) error {
	if n < 1 || n > frame.MaxBatch {
		return fmt.Errorf("%w: batch has %d images; allowed: 1..%d", ErrInvalid, n, frame.MaxBatch)
	}
	return nil
}

// headerSize is the size of h on the wire: "NATS/1.0\r\n", a
// "key: value\r\n" line per value, and a closing "\r\n".
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}
