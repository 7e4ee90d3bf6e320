// Package publish sends images to framecast. It encodes images as the
// seed ComfyUI node does (see package encode) and publishes each frame of
// a batch, in batch order, as one JetStream message on
// subject.Frames(output_id, client_id) with frame.Meta in its headers. The
// producer's HTTP API publishes through this package; other Go programs can
// import it to publish without HTTP.
//
// A batch is published frame by frame. If publishing stops part way, the
// error is a *PartialError that says exactly which frames were stored. With
// an idempotency key every frame carries Nats-Msg-Id
// "<key>/<output token>.<client token>/<batch_index>" (MsgID), so a retry
// within the stream's duplicate window stores nothing twice and gets back
// the sequences of the first attempt. The key is scoped to the output and
// the client: another output or client may use the same key at the same
// time and its frames are stored as its own.
//
// An image larger than the inline limit (Options.InlineLimit, 1 MiB by
// default) does not travel in its stream message: it is stored in the
// large-frame Object Store bucket (stream.Config.Bucket) and the message
// carries only a reference (frame.HeaderObject, frame.HeaderObjectSize)
// with an empty body. Gateways resolve the reference, so subscribers see
// the same frame either way. With an idempotency key the object is named
// "<escaped key>/<output token>.<client token>/<batch_index>" and a retry
// reuses an identical stored object instead of storing it again.
//
// Publisher.Event publishes one ComfyUI execution event, a small JSON
// object {"event": "<name>", "data": {...}}, to subject.Events(client_id)
// in the same stream, so it is ordered, kept and resumed with the frames.
package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/stream"
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

// Size limits of frames.
const (
	// DefaultInlineLimit is the largest image sent inside its stream
	// message by default. It keeps every message far below NATS's
	// max_payload (1 MiB on a stock server counts headers too, so the
	// effective default there is 1 MiB less PayloadHeadroom) and below the
	// message limits of proxies between gateways and clients' brokers.
	DefaultInlineLimit = 1 << 20
	// PayloadHeadroom is kept free below the server's max_payload for the
	// headers of an inline frame.
	PayloadHeadroom = 64 << 10
	// DefaultMaxFrame is the largest image by default. It fits, with its
	// header, the Go client's default 64 MiB message limit, and bounds what
	// a gateway holds per large frame in flight.
	DefaultMaxFrame = 32 << 20
)

// Options tune a Publisher. The zero value is usable.
type Options struct {
	// Timeout bounds each frame's publish and acknowledgement, the upload
	// of a large frame's image included; default DefaultTimeout. A
	// deadline on ctx that is sooner wins.
	Timeout time.Duration
	// MaxPayload is the largest message, headers included, to send. Zero
	// means the connected server's max_payload. A frame whose message
	// would be larger is sent by reference.
	MaxPayload int64
	// InlineLimit is the largest image sent inside its stream message;
	// larger ones are stored in Bucket and sent by reference. Zero means
	// DefaultInlineLimit, lowered to MaxPayload - PayloadHeadroom when that
	// is smaller. Negative sends every frame inline: one over MaxPayload
	// then fails with ErrFrameTooLarge.
	InlineLimit int64
	// MaxFrame is the largest image accepted; default DefaultMaxFrame. A
	// larger one fails with ErrFrameTooLarge before anything of its batch
	// is published.
	MaxFrame int64
	// Bucket is the large-frame Object Store bucket; default the one of
	// stream.Config{} (OUTPUTS_LARGE). stream.Ensure creates it.
	Bucket string
}

// Publisher publishes batches on one JetStream context. It is safe for
// concurrent use and owns no goroutines.
type Publisher struct {
	js   jetstream.JetStream
	opts Options

	mu  sync.Mutex
	obs jetstream.ObjectStore // bound on the first large frame
}

// New returns a Publisher on js. The stream that captures subject.All
// and, for large frames, the bucket (see package stream) must exist for
// publishes to succeed.
func New(js jetstream.JetStream, opts Options) *Publisher {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = DefaultMaxFrame
	}
	if opts.Bucket == "" {
		c, _ := stream.Config{}.WithDefaults()
		opts.Bucket = c.Bucket
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
	// BatchOffset and BatchTotal say that the images are part of a larger
	// batch sent in several publishes: the first image is frame
	// BatchOffset of a batch of BatchTotal frames, and every frame carries
	// its index in that batch. BatchOffset + len(images) must not exceed
	// BatchTotal. Both zero (the default) means the images are the whole
	// batch.
	BatchOffset, BatchTotal int
	// Previews, when not zero, asks for a preview of every image: shrunk
	// (Shrink) so that its longest side is at most Previews pixels
	// (MinPreview..MaxPreview), encoded as WEBP at PreviewQuality, and
	// published on the same subject just before its full frame.
	Previews int
}

// Frame is one encoded image.
type Frame struct {
	Data          []byte
	Format        frame.Format
	Width, Height int
}

// EncodedBatch is a batch of already encoded images.
type EncodedBatch struct {
	OutputID, ClientID      string
	Frames                  []Frame
	IdempotencyKey          string // as Batch.IdempotencyKey
	BatchOffset, BatchTotal int    // as in Batch
	// Previews is empty, or holds the preview of each frame (see
	// Batch.Previews and the function Previews): Previews[i] is published
	// just before Frames[i], with the same batch index.
	Previews []Frame
}

// Ack is the outcome of one published frame.
type Ack struct {
	Seq           uint64 // stream sequence
	BatchIndex    int    // index in the whole batch (see Batch.BatchOffset)
	Format        frame.Format
	Width, Height int
	Bytes         int // size of the encoded image
	// Rendition is frame.Preview for a preview, frame.Full otherwise.
	Rendition frame.Rendition
	// Object is the name the image was stored under in the large-frame
	// bucket, or "" when it travelled inline.
	Object string
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
	if _, err := checkPart(b.BatchOffset, b.BatchTotal, max(len(b.Images), len(b.Pixels))); err != nil {
		return EncodedBatch{}, err
	}
	if err := checkPreview(b.Previews); err != nil {
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
	eb := EncodedBatch{OutputID: b.OutputID, ClientID: b.ClientID, IdempotencyKey: b.IdempotencyKey,
		BatchOffset: b.BatchOffset, BatchTotal: b.BatchTotal, Frames: make([]Frame, len(imgs))}
	for i, m := range imgs {
		r := m.Bounds()
		eb.Frames[i] = Frame{Data: data[i], Format: b.Format, Width: r.Dx(), Height: r.Dy()}
	}
	if b.Previews > 0 {
		if eb.Previews, err = previewsOf(ctx, imgs, b.Previews); err != nil {
			if ctx.Err() != nil {
				return EncodedBatch{}, err
			}
			return EncodedBatch{}, fmt.Errorf("%w: preview: %w", ErrInvalid, err)
		}
	}
	return eb, nil
}

// Encoded publishes already encoded frames in batch order. A frame whose
// Format, Width or Height is zero is probed (encode.Probe, a full decode)
// to fill them; otherwise the caller's values are trusted. Everything is
// checked, including every frame's size against MaxFrame, before the first
// frame is sent.
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
	offset := eb.BatchOffset
	total, err := checkPart(offset, eb.BatchTotal, len(eb.Frames))
	if err != nil {
		return nil, err
	}
	if n := len(eb.Previews); n != 0 && n != len(eb.Frames) {
		return nil, fmt.Errorf("%w: %d previews for %d frames; allowed: none, or one per frame", ErrInvalid, n, len(eb.Frames))
	}
	nc := p.js.Conn()
	payload := p.opts.MaxPayload
	if payload == 0 {
		payload = nc.MaxPayload()
	}
	inline := p.inlineLimit(payload)
	subj := subject.Frames(eb.OutputID, eb.ClientID)
	now := time.Now().UnixMilli()
	items := sequence(eb)
	msgs := make([]*nats.Msg, len(items))
	for k, it := range items {
		f, i := it.f, it.i
		what := fmt.Sprintf("frame %d", i)
		if it.rendition == frame.Preview {
			what = fmt.Sprintf("the preview of frame %d", i)
		}
		if size := int64(len(f.Data)); size > p.opts.MaxFrame {
			return nil, fmt.Errorf("%w: %s is %d bytes; the largest frame is %d bytes", ErrFrameTooLarge, what, size, p.opts.MaxFrame)
		}
		if f.Format == 0 || f.Width == 0 || f.Height == 0 {
			in, err := encode.Probe(f.Data)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
			}
			f.Format, f.Width, f.Height = in.Format, in.Width, in.Height
		}
		meta := frame.Meta{
			OutputID: eb.OutputID, ClientID: eb.ClientID, Format: f.Format,
			Width: f.Width, Height: f.Height, Rendition: it.rendition,
			BatchIndex: offset + i, BatchSize: total, Timestamp: now,
		}
		if err := meta.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
		}
		m := &nats.Msg{Subject: subj, Header: nats.Header{}, Data: f.Data}
		meta.Header(m.Header)
		if eb.IdempotencyKey != "" {
			m.Header.Set(jetstream.MsgIDHeader, it.suffix(MsgID(eb.OutputID, eb.ClientID, eb.IdempotencyKey, offset+i)))
		}
		size := int64(len(f.Data) + headerSize(m.Header))
		if inline >= 0 && (int64(len(f.Data)) > inline || (payload > 0 && size > payload)) {
			meta.Object, meta.ObjectSize = it.suffix(objectName(eb.OutputID, eb.ClientID, eb.IdempotencyKey, offset+i)), int64(len(f.Data))
			meta.Header(m.Header)
			m.Data = nil
		} else if payload > 0 && size > payload {
			return nil, fmt.Errorf("%w: %s is %d bytes with headers; the broker accepts at most %d bytes per message",
				ErrFrameTooLarge, what, size, payload)
		}
		msgs[k] = m
	}
	if !nc.IsConnected() {
		return nil, &PartialError{Failed: offset, Offset: offset, Total: len(eb.Frames), Err: fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, nc.Status())}
	}
	acks := make([]Ack, 0, len(msgs))
	for k, m := range msgs {
		f, i := *items[k].f, items[k].i
		pctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
		var name string
		if m.Header.Get(frame.HeaderObject) != "" {
			var err error
			if name, err = p.store(pctx, m, f, eb.IdempotencyKey != ""); err != nil {
				cancel()
				return nil, &PartialError{Published: acks, Failed: offset + i, Offset: offset, Total: len(eb.Frames), Err: storeError(ctx, err, p.opts.Bucket)}
			}
		}
		pa, err := p.js.PublishMsg(pctx, m, jetstream.WithRetryAttempts(0))
		cancel()
		if err != nil {
			err, uncertain := classify(ctx, err)
			return nil, &PartialError{Published: acks, Failed: offset + i, Offset: offset, Total: len(eb.Frames), Uncertain: uncertain, Err: err}
		}
		acks = append(acks, Ack{
			Seq: pa.Sequence, BatchIndex: offset + i, Format: f.Format, Rendition: items[k].rendition,
			Width: f.Width, Height: f.Height, Bytes: len(f.Data), Object: name, Duplicate: pa.Duplicate,
		})
	}
	return acks, nil
}

// item is one message of a publish: a frame or its preview.
type item struct {
	f         *Frame
	i         int // index in the publish
	rendition frame.Rendition
}

// sequence lists the messages of eb in publish order: each frame's
// preview, if any, just before the frame.
func sequence(eb EncodedBatch) []item {
	items := make([]item, 0, len(eb.Frames)+len(eb.Previews))
	for i := range eb.Frames {
		if len(eb.Previews) > 0 {
			items = append(items, item{&eb.Previews[i], i, frame.Preview})
		}
		items = append(items, item{&eb.Frames[i], i, frame.Full})
	}
	return items
}

// suffix makes a frame's message id or object name that of its preview:
// "<id>/preview".
func (it item) suffix(name string) string {
	if it.rendition == frame.Preview {
		return name + "/preview"
	}
	return name
}

// inlineLimit is the largest image to send inline, or -1 for no limit.
func (p *Publisher) inlineLimit(payload int64) int64 {
	switch {
	case p.opts.InlineLimit < 0:
		return -1
	case p.opts.InlineLimit > 0:
		return p.opts.InlineLimit
	case payload > 0:
		return max(0, min(DefaultInlineLimit, payload-PayloadHeadroom))
	}
	return DefaultInlineLimit
}

// objectName names frame i's object: derived from the idempotency key and
// the frame's output and client, so a retry finds what an earlier attempt
// stored, or unique.
func objectName(oid, cid, key string, i int) string {
	if key == "" {
		return nuid.Next()
	}
	return subject.Escape(key) + "/" + scope(oid, cid) + "/" + strconv.Itoa(i)
}

// store puts f's image into the bucket under the name in m's reference
// header and returns the name. With reuse (an idempotency key), an
// identical object already stored under that name is kept as it is; a
// different one (a key reused for other content) is left alone and the
// image stored under a new unique name, which m then refers to.
func (p *Publisher) store(ctx context.Context, m *nats.Msg, f Frame, reuse bool) (string, error) {
	obs, err := p.objects(ctx)
	if err != nil {
		return "", err
	}
	name := m.Header.Get(frame.HeaderObject)
	if reuse {
		info, err := obs.GetInfo(ctx, name)
		switch {
		case err == nil && info.Size == uint64(len(f.Data)) && info.Digest == digest(f.Data):
			return name, nil
		case err == nil:
			name += "/" + nuid.Next()
			m.Header.Set(frame.HeaderObject, name)
		case !errors.Is(err, jetstream.ErrObjectNotFound):
			return "", err
		}
	}
	meta := jetstream.ObjectMeta{Name: name, Headers: nats.Header{frame.HeaderContentType: []string{f.Format.ContentType()}}}
	if _, err := obs.Put(ctx, meta, bytes.NewReader(f.Data)); err != nil {
		return "", err
	}
	return name, nil
}

// objects binds the bucket once.
func (p *Publisher) objects(ctx context.Context) (jetstream.ObjectStore, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.obs != nil {
		return p.obs, nil
	}
	obs, err := p.js.ObjectStore(ctx, p.opts.Bucket)
	if err != nil {
		return nil, err
	}
	p.obs = obs
	return obs, nil
}

// digest is the Object Store's digest of b.
func digest(b []byte) string {
	h := sha256.New()
	h.Write(b)
	return jetstream.GetObjectDigestValue(h)
}

// storeError maps a failure to store a large frame's image. Its reference
// was not sent, so the frame is certainly not stored.
func storeError(ctx context.Context, err error, bucket string) error {
	var api *jetstream.APIError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("store large frame: %w", context.Cause(ctx))
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return fmt.Errorf("%w: the large-frame bucket %s does not exist (framecast stream ensure has not created it yet): %v", ErrUnavailable, bucket, err)
	case errors.As(err, &api):
		return fmt.Errorf("%w: the large-frame bucket %s refused the image (full until older frames age out?): %v", ErrUnavailable, bucket, err)
	}
	return fmt.Errorf("%w: storing the image in the large-frame bucket %s: %v", ErrUnavailable, bucket, err)
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

// MsgID is the Nats-Msg-Id of frame i of a batch of output oid for client
// cid published with key: "<key>/<output token>.<client token>/<i>". The
// key is scoped to the output and the client, so the same key used by two
// outputs (or two clients) names different frames. Read from the right the
// id is unambiguous: tokens hold no '/', and an event's id (EventMsgID)
// ends in a token that is never digits.
func MsgID(oid, cid, key string, i int) string {
	return key + "/" + scope(oid, cid) + "/" + strconv.Itoa(i)
}

// scope is the part of an idempotent id that names the output and the
// client: their subject tokens, which hold neither '/' nor '.'.
func scope(oid, cid string) string { return subject.Escape(oid) + "." + subject.ClientToken(cid) }

// ValidateKey checks an idempotency key: 1..128 bytes of printable ASCII.
func ValidateKey(key string) error { return checkKey(ErrInvalid, key) }

// checkKey is ValidateKey with errors wrapping sentinel.
func checkKey(sentinel error, key string) error {
	if key == "" {
		return fmt.Errorf("%w: idempotency key is empty; allowed: 1..%d bytes of printable ASCII", sentinel, MaxKey)
	}
	if len(key) > MaxKey {
		return fmt.Errorf("%w: idempotency key is %d bytes; allowed: 1..%d bytes of printable ASCII", sentinel, len(key), MaxKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7E {
			return fmt.Errorf("%w: idempotency key has byte 0x%02X at offset %d; allowed: 1..%d bytes of printable ASCII", sentinel, c, i, MaxKey)
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

// checkPart checks that n images at offset fit a batch of total (0 and 0:
// the images are the whole batch) and returns the whole batch's size.
func checkPart(offset, total, n int) (int, error) {
	switch {
	case offset == 0 && total == 0:
		return n, nil
	case total < 1 || total > frame.MaxBatch:
		return 0, fmt.Errorf("%w: batch total %d; allowed: 1..%d", ErrInvalid, total, frame.MaxBatch)
	case offset < 0 || offset+n > total:
		return 0, fmt.Errorf("%w: %d images at batch offset %d do not fit a batch of %d; allowed: 0 <= offset and offset + images <= total", ErrInvalid, n, offset, total)
	}
	return total, nil
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
