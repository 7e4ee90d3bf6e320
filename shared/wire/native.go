package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/framecast/framecast/shared/frame"
)

// MaxHeader bounds the JSON header of a native frame.
const MaxHeader = 4096

// Header is the JSON header of a native frame.
type Header struct {
	Seq         uint64 `json:"seq"`
	OutputID    string `json:"output_id"`
	ClientID    string `json:"client_id"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	BatchIndex  int    `json:"batch_index"`
	BatchSize   int    `json:"batch_size"`
	// TS is the producer's publish time in milliseconds since the Unix epoch.
	TS int64 `json:"ts"`
	// Rendition is "full" for the image as published and "preview" for
	// its small copy (frame.Rendition).
	Rendition string `json:"rendition"`
}

// HeaderOf is the native header of the frame with stream sequence seq.
func HeaderOf(seq uint64, m frame.Meta) Header {
	return Header{
		Seq: seq, OutputID: m.OutputID, ClientID: m.ClientID,
		ContentType: m.Format.ContentType(), Width: m.Width, Height: m.Height,
		BatchIndex: m.BatchIndex, BatchSize: m.BatchSize, TS: m.Timestamp,
		Rendition: m.Rendition.String(),
	}
}

// EncodeNative returns the native frame: uint32 big-endian header length,
// the header as JSON, then img.
func EncodeNative(h Header, img []byte) []byte {
	return append(NativePrefix(h, len(img)), img...)
}

// NativePrefix is what comes before the image in a native frame: the
// header's length and the header. Its capacity leaves room for extra
// more bytes.
func NativePrefix(h Header, extra int) []byte {
	js, err := json.Marshal(h)
	if err != nil {
		// Header has only strings and integers; Marshal cannot fail.
		panic(fmt.Sprintf("wire: marshal header: %v", err))
	}
	b := make([]byte, 4+len(js), 4+len(js)+extra)
	binary.BigEndian.PutUint32(b, uint32(len(js)))
	copy(b[4:], js)
	return b
}

// DecodeNative splits a native frame into its header and image. The image
// aliases b.
func DecodeNative(b []byte) (Header, []byte, error) {
	if len(b) < 4 {
		return Header{}, nil, fmt.Errorf("%w: native frame of %d bytes is shorter than its 4-byte length", ErrMalformed, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if n > MaxHeader || int(n) > len(b)-4 {
		return Header{}, nil, fmt.Errorf("%w: native header length %d exceeds the frame (%d bytes) or the limit %d", ErrMalformed, n, len(b), MaxHeader)
	}
	var h Header
	if err := json.Unmarshal(b[4:4+n], &h); err != nil {
		return Header{}, nil, fmt.Errorf("%w: native header: %v", ErrMalformed, err)
	}
	return h, b[4+n:], nil
}
