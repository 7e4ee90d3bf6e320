package producer

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"image"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

const (
	outputsPrefix = "/v1/outputs/"
	imagesSuffix  = "/images"
)

// ResponseFrame describes one published frame in a Response.
type ResponseFrame struct {
	Seq         uint64 `json:"seq"`
	BatchIndex  int    `json:"batch_index"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Bytes       int    `json:"bytes"`
	// Rendition is "preview" for an image's preview (published just before
	// it, with the same batch_index) and "full" for the image.
	Rendition string `json:"rendition"`
	// Duplicate is set when an idempotent retry found the frame already
	// stored; Seq is then the sequence of the first attempt.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Response is the 200 answer of POST /v1/outputs/{output_id}/images.
type Response struct {
	OutputID string          `json:"output_id"`
	ClientID string          `json:"client_id"`
	Frames   []ResponseFrame `json:"frames"`
}

func framesJSON(acks []publish.Ack) []ResponseFrame {
	out := make([]ResponseFrame, len(acks))
	for i, a := range acks {
		out[i] = ResponseFrame{Seq: a.Seq, BatchIndex: a.BatchIndex, ContentType: a.Format.ContentType(),
			Width: a.Width, Height: a.Height, Bytes: a.Bytes, Rendition: a.Rendition.String(), Duplicate: a.Duplicate}
	}
	return out
}

// serveImages handles every path under /v1/outputs/.
func (s *Server) serveImages(w http.ResponseWriter, r *http.Request) {
	oid, e := outputIDOf(r.URL.EscapedPath())
	if e == nil && r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e = errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s is not allowed on %s; allowed: POST", r.Method, r.URL.Path)
	}
	if e == nil {
		e = s.authorize(w, r)
	}
	if e == nil {
		e = s.publishRequest(w, r, oid)
	}
	if e != nil {
		if e.status >= 500 {
			s.log.Warn("publish request failed", "path", r.URL.Path, "code", e.code, "err", e.message)
		}
		s.writeError(w, e)
	}
}

// outputIDOf returns the unescaped output_id of a path
// /v1/outputs/{output_id}/images, validated.
func outputIDOf(escaped string) (string, *apiError) {
	rest := strings.TrimPrefix(escaped, outputsPrefix)
	seg, ok := strings.CutSuffix(rest, imagesSuffix)
	if !ok || strings.Contains(seg, "/") {
		return "", errorf(http.StatusNotFound, CodeNotFound, "no route for %s; the API is POST /v1/outputs/{output_id}/images with output_id percent-encoded as one path segment", escaped)
	}
	oid, err := url.PathUnescape(seg)
	if err != nil {
		return "", errorf(http.StatusBadRequest, CodeInvalidOutputID, "output_id %q is not valid percent-encoding; allowed: 1..%d bytes of printable ASCII, percent-encoded as one path segment", seg, subject.MaxOutputID)
	}
	if err := subject.ValidateOutputID(oid); err != nil {
		return "", errorf(http.StatusBadRequest, CodeInvalidOutputID, "%s", strings.TrimPrefix(err.Error(), subject.ErrInvalidID.Error()+": "))
	}
	return oid, nil
}

// authorize checks the bearer token when tokens are configured: 401 when
// none is sent, 403 when it is not one of them. Every configured token is
// compared in constant time, so timing says nothing about which matched.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *apiError {
	if len(s.cfg.Tokens) == 0 {
		return nil
	}
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	if h == "" || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="framecast"`)
		return errorf(http.StatusUnauthorized, CodeUnauthorized, "a bearer token is required; send Authorization: Bearer <token>")
	}
	tok = strings.TrimSpace(tok)
	match := 0
	for _, t := range s.cfg.Tokens {
		match |= subtle.ConstantTimeCompare([]byte(t), []byte(tok))
	}
	if match == 0 {
		return errorf(http.StatusForbidden, CodeForbidden, "the bearer token is not accepted by this producer")
	}
	return nil
}

func (s *Server) publishRequest(w http.ResponseWriter, r *http.Request, oid string) *apiError {
	req, e := parseRequest(r.URL.RawQuery, r.Header.Get("Content-Type"))
	if e != nil {
		return e
	}
	key, e := idempotencyKey(r.Header)
	if e != nil {
		return e
	}
	limit := s.cfg.MaxBodyBytes
	if req.kind == bodyRaw {
		size := req.rawSize()
		if size > limit {
			return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "a %s body of batch %d × height %d × width %d × channels %d is %d bytes; the limit is %d bytes",
				req.dtype, req.shape.Batch, req.shape.Height, req.shape.Width, req.shape.Channels, size, limit)
		}
		if r.ContentLength >= 0 && r.ContentLength != size {
			return rawLengthError(req, r.ContentLength)
		}
	} else if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "body is %d bytes; the limit is %d bytes", r.ContentLength, limit)
	}
	if req.kind == bodyRaw {
		if e := s.checkPixels(req.shape.Width, req.shape.Height, "each image"); e != nil {
			return e
		}
	}
	if !s.Ready() {
		return s.unavailable()
	}

	ctx := r.Context()
	// Everything the request reads, decodes and encodes is held in its
	// lease of the memory budget until its frames are published.
	l := s.newLease()
	defer l.release()
	body := http.MaxBytesReader(w, r.Body, limit)
	eb := publish.EncodedBatch{OutputID: oid, ClientID: req.clientID, IdempotencyKey: key,
		BatchOffset: req.batchOffset, BatchTotal: req.batchTotal}
	switch req.kind {
	case bodyRaw:
		eb, e = s.readRaw(ctx, l, req, body, eb)
	case bodyImage:
		eb.Frames, eb.Previews, e = s.readImage(ctx, l, req, body)
	case bodyMultipart:
		eb.Frames, eb.Previews, e = s.readMultipart(ctx, l, req, body)
	}
	if e == nil {
		e = req.checkPart(len(eb.Frames))
	}
	if e != nil {
		return e
	}
	if e := s.reencode(ctx, l, req, eb.Frames); e != nil {
		return e
	}

	// A batch that started publishing is finished even if the client
	// leaves; each frame is bounded by the publish timeout.
	start := time.Now()
	acks, err := s.pub.Encoded(context.WithoutCancel(ctx), eb)
	s.metrics.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		return s.publishError(err, key)
	}
	for _, a := range acks {
		if !a.Duplicate {
			s.metrics.frames.WithLabelValues(a.Format.String()).Inc()
			s.metrics.bytes.Add(float64(a.Bytes))
		}
	}
	writeJSON(w, http.StatusOK, Response{OutputID: oid, ClientID: req.clientID, Frames: framesJSON(acks)})
	return nil
}

func (s *Server) unavailable() *apiError {
	e := errorf(http.StatusServiceUnavailable, CodeBrokerUnavailable, "the broker is unavailable (NATS %s); nothing was published; retry after %d s", s.nc.Status(), s.retryAfter)
	if s.nc.IsConnected() {
		e.message = fmt.Sprintf("the stream %s is not ready yet; nothing was published; retry after %d s", s.cfg.Stream.Name, s.retryAfter)
	}
	e.retry = true
	return e
}

func (s *Server) publishError(err error, key string) *apiError {
	var pe *publish.PartialError
	switch {
	case errors.As(err, &pe) && errors.Is(pe.Err, publish.ErrFrameTooLarge):
		// The broker refused one frame's size (its max_payload is below
		// what the producer was told): a retry fails the same way.
		e := errorf(http.StatusRequestEntityTooLarge, CodeFrameTooLarge, "%v; the frames listed in published were stored; send the rest smaller, at a lower quality, or as another file_type", err)
		e.published = framesJSON(pe.Published)
		return e
	case errors.As(err, &pe):
		e := errorf(http.StatusServiceUnavailable, CodeBrokerUnavailable, "%v", err)
		if key != "" {
			e.message += "; retry with the same Idempotency-Key to publish the rest without duplicates"
		} else {
			e.message += "; send an Idempotency-Key to make a retry safe from duplicates"
		}
		e.published = framesJSON(pe.Published)
		e.retry = true
		return e
	case errors.Is(err, publish.ErrFrameTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, CodeFrameTooLarge, "%s; nothing was published; send a smaller image, a lower quality, or another file_type",
			strings.TrimPrefix(err.Error(), publish.ErrFrameTooLarge.Error()+": "))
	case errors.Is(err, publish.ErrInvalid):
		return errorf(http.StatusBadRequest, CodeInvalidImage, "%s; nothing was published", strings.TrimPrefix(err.Error(), publish.ErrInvalid.Error()+": "))
	}
	return errorf(http.StatusInternalServerError, CodeInternal, "%v", err)
}

func rawLengthError(req request, got int64) *apiError {
	return errorf(http.StatusBadRequest, CodeInvalidBody, "%s body is %d bytes; expected %d (batch %d × height %d × width %d × channels %d × %d bytes)",
		req.dtype, got, req.rawSize(), req.shape.Batch, req.shape.Height, req.shape.Width, req.shape.Channels, req.elemSize())
}

func bodyError(err error, limit int64, what string) *apiError {
	switch {
	case isTooLarge(err):
		return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "%s is over the limit of %d bytes", what, limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(http.StatusRequestTimeout, CodeBodyTimeout, "reading %s: it did not arrive within the producer's read timeout; nothing was published; send it faster or in smaller requests", what)
	case errors.Is(err, errOverloaded), errors.Is(err, errOverBudget):
		return budgetError(err)
	}
	return errorf(http.StatusBadRequest, CodeInvalidBody, "reading %s: %v", what, err)
}

// budgetError is the answer to a lease that could not grow: err is
// errOverloaded, errOverBudget, or the request's context's cause.
func budgetError(err error) *apiError {
	switch {
	case errors.Is(err, errOverloaded):
		e := errorf(http.StatusServiceUnavailable, CodeOverloaded, "the producer's memory for requests in flight is in use; nothing was published; retry after the Retry-After delay")
		e.retry = true
		return e
	case errors.Is(err, errOverBudget):
		return errorf(http.StatusRequestEntityTooLarge, CodeImageTooLarge, "the request's body and images need %v; nothing was published; send smaller images or fewer in one request",
			strings.TrimPrefix(err.Error(), errOverBudget.Error()+": "))
	}
	return errorf(http.StatusBadRequest, CodeInvalidBody, "request ended before its images were read and encoded: %v", err)
}

// checkPixels refuses an image of w×h over Config.MaxPixels.
func (s *Server) checkPixels(w, h int, what string) *apiError {
	if px := int64(w) * int64(h); px > int64(s.cfg.MaxPixels) {
		return errorf(http.StatusRequestEntityTooLarge, CodeImageTooLarge, "%s is %dx%d, %d pixels; allowed: at most %d pixels (the producer's --max-pixels)", what, w, h, px, s.cfg.MaxPixels)
	}
	return nil
}

// readRaw reads exactly the tensor's bytes, converts them as the seed does
// and encodes the batch.
func (s *Server) readRaw(ctx context.Context, l *lease, req request, body io.Reader, eb publish.EncodedBatch) (publish.EncodedBatch, *apiError) {
	size := req.rawSize()
	buf, err := l.read(ctx, body, nil, size)
	if err != nil {
		return eb, bodyError(err, s.cfg.MaxBodyBytes, "the body")
	}
	if int64(len(buf)) < size {
		return eb, rawLengthError(req, int64(len(buf)))
	}
	if extra, err := io.Copy(io.Discard, body); err != nil || extra > 0 {
		if err != nil && !isTooLarge(err) {
			return eb, bodyError(err, s.cfg.MaxBodyBytes, "the body")
		}
		return eb, rawLengthError(req, size+extra)
	}
	// The float32 conversion's images, and the encoders at work.
	need := int64(min(req.shape.Batch, runtime.GOMAXPROCS(0))) * encodeCost(req.shape.Width, req.shape.Height, req.format)
	if req.dtype == "float32" {
		need += size / 4
	}
	if req.previews > 0 {
		need += int64(req.shape.Batch) * previewCost(req.previews)
	}
	if err := l.grow(ctx, need); err != nil {
		return eb, budgetError(err)
	}
	var px []encode.Pixels
	if req.dtype == "float32" {
		px, err = encode.SplitFloat32LE(buf, req.shape)
	} else {
		px, err = encode.SplitUint8(buf, req.shape)
	}
	if err != nil {
		return eb, errorf(http.StatusBadRequest, CodeInvalidShape, "%v", err)
	}
	start := time.Now()
	out, err := publish.Encode(ctx, publish.Batch{OutputID: eb.OutputID, ClientID: eb.ClientID, IdempotencyKey: eb.IdempotencyKey,
		BatchOffset: eb.BatchOffset, BatchTotal: eb.BatchTotal, Pixels: px, Format: req.format, Quality: req.quality, Previews: req.previews})
	s.metrics.encode.Observe(time.Since(start).Seconds())
	if err != nil {
		return eb, encodeError(ctx, err)
	}
	return out, nil
}

func encodeError(ctx context.Context, err error) *apiError {
	switch {
	case ctx.Err() != nil:
		return errorf(http.StatusBadRequest, CodeInvalidBody, "request ended before its images were encoded: %v", context.Cause(ctx))
	case errors.Is(err, encode.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, CodeImageTooLarge, "%v; nothing was published", err)
	}
	return errorf(http.StatusBadRequest, CodeInvalidImage, "%v; nothing was published", err)
}

// probe checks that b is one whole image of a supported type, within
// MaxPixels, decoding it under the lease. what names it in errors. With
// previews > 0 it also returns the image's preview, made from the image
// it decoded (so an upload is decoded once for both).
func (s *Server) probe(ctx context.Context, l *lease, b []byte, declared frame.Format, previews int, what string) (f, preview publish.Frame, e *apiError) {
	if c, format, err := image.DecodeConfig(bytes.NewReader(b)); err == nil {
		// A header that does not parse is refused by encode.Decode
		// below, before it decodes anything.
		if e := s.checkPixels(c.Width, c.Height, what); e != nil {
			return f, preview, e
		}
		cost := decodeCost(c, format)
		if previews > 0 {
			cost += previewCost(previews)
		}
		if err := l.grow(ctx, cost); err != nil {
			return f, preview, budgetError(err)
		}
		defer l.shrink(cost)
	}
	in, img, err := encode.Decode(b)
	switch {
	case errors.Is(err, encode.ErrTooLarge):
		return f, preview, errorf(http.StatusRequestEntityTooLarge, CodeImageTooLarge, "%s: %v; allowed: at most %d pixels", what, err, s.cfg.MaxPixels)
	case err != nil:
		return f, preview, errorf(http.StatusBadRequest, CodeInvalidImage, "%s does not decode as an image (%v); allowed: one complete PNG, JPEG or WEBP image", what, err)
	case declared != 0 && in.Format != declared:
		return f, preview, errorf(http.StatusBadRequest, CodeInvalidImage, "%s is a %s image but its Content-Type says %s; send the matching Content-Type", what, in.Format.ContentType(), declared.ContentType())
	}
	if previews > 0 {
		start := time.Now()
		preview, err = publish.Preview(ctx, img, previews)
		s.metrics.encode.Observe(time.Since(start).Seconds())
		if err != nil {
			return f, preview, encodeError(ctx, err)
		}
		// Kept until the batch is published, as the image is.
		if err := l.grow(ctx, int64(len(preview.Data))); err != nil {
			return f, preview, budgetError(err)
		}
	}
	return publish.Frame{Data: b, Format: in.Format, Width: in.Width, Height: in.Height}, preview, nil
}

// readImage reads a body of one encoded image, and makes its preview
// when the request asks for previews.
func (s *Server) readImage(ctx context.Context, l *lease, req request, body io.Reader) (frames, previews []publish.Frame, e *apiError) {
	b, err := l.read(ctx, body, nil, 0)
	if err != nil {
		return nil, nil, bodyError(err, s.cfg.MaxBodyBytes, "the body")
	}
	f, p, e := s.probe(ctx, l, b, req.declared, req.previews, "the body")
	if e != nil {
		return nil, nil, e
	}
	if req.previews > 0 {
		previews = []publish.Frame{p}
	}
	return []publish.Frame{f}, previews, nil
}

// readMultipart reads every part, in order, as one image, and makes its
// preview when the request asks for previews. A part's Content-Type may
// be absent or application/octet-stream (the bytes are sniffed);
// otherwise it must be the image type the bytes are. Each part is read
// into one scratch buffer that grows to the largest part, then kept in a
// copy of its exact size.
func (s *Server) readMultipart(ctx context.Context, l *lease, req request, body io.Reader) (frames, previews []publish.Frame, e *apiError) {
	limit := s.cfg.MaxBodyBytes
	mr := multipart.NewReader(body, req.boundary)
	var scratch []byte
	defer func() { l.shrink(int64(cap(scratch))) }()
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, bodyError(err, limit, "the multipart body")
		}
		if i >= frame.MaxBatch {
			return nil, nil, errorf(http.StatusBadRequest, CodeInvalidBody, "multipart body has more than %d parts; allowed: 1..%d images", frame.MaxBatch, frame.MaxBatch)
		}
		what := fmt.Sprintf("part %d (name %q)", i, p.FormName())
		var declared frame.Format
		if ct := p.Header.Get("Content-Type"); ct != "" && ct != "application/octet-stream" {
			if declared, err = frame.FormatOf(ct); err != nil {
				return nil, nil, errorf(http.StatusBadRequest, CodeInvalidImage, "%s has Content-Type %q; allowed: image/png, image/jpeg, image/webp, or application/octet-stream or none (sniffed)", what, ct)
			}
		}
		if scratch, err = l.read(ctx, p, scratch, 0); err != nil {
			return nil, nil, bodyError(err, limit, what)
		}
		if err := l.grow(ctx, int64(len(scratch))); err != nil {
			return nil, nil, budgetError(err)
		}
		f, pv, e := s.probe(ctx, l, bytes.Clone(scratch), declared, req.previews, what)
		if e != nil {
			return nil, nil, e
		}
		frames = append(frames, f)
		if req.previews > 0 {
			previews = append(previews, pv)
		}
	}
	if len(frames) == 0 {
		return nil, nil, errorf(http.StatusBadRequest, CodeInvalidBody, "multipart body has no parts; allowed: 1..%d image parts", frame.MaxBatch)
	}
	return frames, previews, nil
}

// reencode converts encoded frames to the requested format when file_type
// was given and differs; otherwise the bytes are forwarded as they came.
// It decodes and encodes up to GOMAXPROCS images at a time, as many as the
// lease can hold, so a batch of large images never holds more than that
// many decoded at once.
func (s *Server) reencode(ctx context.Context, l *lease, req request, frames []publish.Frame) *apiError {
	if !req.formatSet {
		return nil
	}
	var idx []int
	for i, f := range frames {
		if f.Format != req.format {
			idx = append(idx, i)
		}
	}
	step := runtime.GOMAXPROCS(0)
	imgs := make([]image.Image, 0, step)
	for len(idx) > 0 {
		imgs = imgs[:0]
		var held int64
		for len(imgs) < min(step, len(idx)) {
			i := idx[len(imgs)]
			c, format, err := image.DecodeConfig(bytes.NewReader(frames[i].Data))
			if err != nil {
				l.shrink(held)
				return errorf(http.StatusBadRequest, CodeInvalidImage, "image %d does not decode: %v", i, err)
			}
			need := decodeCost(c, format) + encodeCost(c.Width, c.Height, req.format)
			if err := l.grow(ctx, need); err != nil {
				if errors.Is(err, errOverBudget) && len(imgs) > 0 {
					break // encode the images decoded so far first
				}
				l.shrink(held)
				return budgetError(err)
			}
			held += need
			m, _, err := image.Decode(bytes.NewReader(frames[i].Data))
			if err != nil {
				l.shrink(held)
				return errorf(http.StatusBadRequest, CodeInvalidImage, "image %d does not decode: %v", i, err)
			}
			imgs = append(imgs, m)
		}
		chunk := idx[:len(imgs)]
		idx = idx[len(chunk):]
		start := time.Now()
		out, err := encode.Batch(ctx, imgs, req.format, req.quality)
		s.metrics.encode.Observe(time.Since(start).Seconds())
		clear(imgs)
		l.shrink(held)
		if err != nil {
			var be *encode.BatchError
			if errors.As(err, &be) {
				be.Index = chunk[be.Index]
			}
			return encodeError(ctx, err)
		}
		for j, i := range chunk {
			frames[i].Data, frames[i].Format = out[j], req.format
		}
	}
	return nil
}
