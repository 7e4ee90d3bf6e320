package frame

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/framecast/framecast/shared/subject"
)

// NATS header names carrying Meta.
const (
	HeaderContentType = "Content-Type"
	HeaderOutputID    = "Framecast-Output-Id"
	HeaderClientID    = "Framecast-Client-Id"
	HeaderWidth       = "Framecast-Width"
	HeaderHeight      = "Framecast-Height"
	HeaderBatchIndex  = "Framecast-Batch-Index"
	HeaderBatchSize   = "Framecast-Batch-Size"
	HeaderTimestamp   = "Framecast-Ts"
	// HeaderObject names the Object Store entry holding the image when it
	// was too large to travel inline; the message body is then empty.
	HeaderObject = "Framecast-Object"
	// HeaderObjectSize is the size in bytes of the image named by
	// HeaderObject, so a receiver can budget for it before fetching it.
	HeaderObjectSize = "Framecast-Object-Size"
	// HeaderEvent names the ComfyUI execution event a message of
	// subject.Events carries; the message body is the event object's JSON
	// text, {"event": <this name>, "data": {...}}.
	HeaderEvent = "Framecast-Event"
	// HeaderRendition is "preview" on a preview frame; a full frame
	// carries no such header.
	HeaderRendition = "Framecast-Rendition"
)

// Limits on metadata values, checked by Decode and Validate.
const (
	MaxDimension = 1 << 15
	MaxBatch     = 4096
)

// Meta is what a frame says about itself.
type Meta struct {
	OutputID   string
	ClientID   string // "" for broadcast
	Format     Format
	Width      int
	Height     int
	BatchIndex int
	BatchSize  int
	// Timestamp is when the producer published the frame, in milliseconds
	// since the Unix epoch.
	Timestamp int64
	// Rendition says whether the frame is the image as published or its
	// preview; the zero value is Full.
	Rendition Rendition
	// Object is the Object Store name of an image sent by reference, or "".
	Object string
	// ObjectSize is the size in bytes of the image named by Object; 0 when
	// Object is "" or the sender did not say.
	ObjectSize int64
}

// Validate checks every field against the contract.
func (m Meta) Validate() error {
	if err := subject.ValidateOutputID(m.OutputID); err != nil {
		return err
	}
	if err := subject.ValidateClientID(m.ClientID); err != nil {
		return err
	}
	if !m.Format.Valid() {
		return fmt.Errorf("%w: format %d is unknown; allowed: 1 (jpeg), 2 (png), 3 (webp)", ErrInvalid, uint32(m.Format))
	}
	if m.Width < 1 || m.Width > MaxDimension || m.Height < 1 || m.Height > MaxDimension {
		return fmt.Errorf("%w: size %dx%d; width and height must be 1..%d", ErrInvalid, m.Width, m.Height, MaxDimension)
	}
	if m.BatchSize < 1 || m.BatchSize > MaxBatch || m.BatchIndex < 0 || m.BatchIndex >= m.BatchSize {
		return fmt.Errorf("%w: batch index %d of %d; want 0 <= index < size <= %d", ErrInvalid, m.BatchIndex, m.BatchSize, MaxBatch)
	}
	if m.Rendition > Preview {
		return fmt.Errorf("%w: rendition %d is unknown; allowed: 0 (full), 1 (preview)", ErrInvalid, uint8(m.Rendition))
	}
	if m.ObjectSize < 0 || (m.ObjectSize > 0 && m.Object == "") {
		return fmt.Errorf("%w: object size %d for object %q; want 0, or a positive size with an object name", ErrInvalid, m.ObjectSize, m.Object)
	}
	return nil
}

// Subject is the subject the frame is published to.
func (m Meta) Subject() string { return subject.Frames(m.OutputID, m.ClientID) }

// Time is Timestamp as a time.Time.
func (m Meta) Time() time.Time { return time.UnixMilli(m.Timestamp) }

// Header writes m into h, which must not be nil.
func (m Meta) Header(h nats.Header) {
	h.Set(HeaderContentType, m.Format.ContentType())
	h.Set(HeaderOutputID, m.OutputID)
	if m.ClientID != "" {
		h.Set(HeaderClientID, m.ClientID)
	}
	h.Set(HeaderWidth, strconv.Itoa(m.Width))
	h.Set(HeaderHeight, strconv.Itoa(m.Height))
	h.Set(HeaderBatchIndex, strconv.Itoa(m.BatchIndex))
	h.Set(HeaderBatchSize, strconv.Itoa(m.BatchSize))
	h.Set(HeaderTimestamp, strconv.FormatInt(m.Timestamp, 10))
	if m.Rendition != Full {
		h.Set(HeaderRendition, m.Rendition.String())
	}
	if m.Object != "" {
		h.Set(HeaderObject, m.Object)
	}
	if m.ObjectSize != 0 {
		h.Set(HeaderObjectSize, strconv.FormatInt(m.ObjectSize, 10))
	}
}

// Decode reads Meta from NATS headers and validates it.
func Decode(h nats.Header) (Meta, error) {
	var m Meta
	f, err := FormatOf(h.Get(HeaderContentType))
	if err != nil {
		return Meta{}, err
	}
	m.Format = f
	m.OutputID = h.Get(HeaderOutputID)
	m.ClientID = h.Get(HeaderClientID)
	m.Object = h.Get(HeaderObject)
	if m.Rendition, err = ParseRendition(h.Get(HeaderRendition)); err != nil {
		return Meta{}, fmt.Errorf("header %s: %w", HeaderRendition, err)
	}
	ints := []struct {
		name string
		dst  *int
	}{
		{HeaderWidth, &m.Width},
		{HeaderHeight, &m.Height},
		{HeaderBatchIndex, &m.BatchIndex},
		{HeaderBatchSize, &m.BatchSize},
	}
	for _, f := range ints {
		v, err := strconv.Atoi(h.Get(f.name))
		if err != nil {
			return Meta{}, fmt.Errorf("%w: header %s: %q is not an integer", ErrInvalid, f.name, h.Get(f.name))
		}
		*f.dst = v
	}
	if m.Timestamp, err = strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64); err != nil {
		return Meta{}, fmt.Errorf("%w: header %s: %q is not an integer", ErrInvalid, HeaderTimestamp, h.Get(HeaderTimestamp))
	}
	if v := h.Get(HeaderObjectSize); v != "" {
		if m.ObjectSize, err = strconv.ParseInt(v, 10, 64); err != nil {
			return Meta{}, fmt.Errorf("%w: header %s: %q is not an integer", ErrInvalid, HeaderObjectSize, v)
		}
	}
	if err := m.Validate(); err != nil {
		return Meta{}, err
	}
	return m, nil
}
