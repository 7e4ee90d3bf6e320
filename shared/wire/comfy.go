package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// ComfyHeaderSize is the size of the seed node's binary frame header.
const ComfyHeaderSize = 32

// EventPreviewImage is the seed's event type (ComfyUI BinaryEventTypes
// PREVIEW_IMAGE).
const EventPreviewImage = 1

// ComfyFrame is a decoded ComfyDeploy frame.
type ComfyFrame struct {
	Event    uint32
	Format   frame.Format
	OutputID string
	Image    []byte // aliases the decoded message
}

// EncodeComfy returns the seed node's frame: uint32 BE event type 1, uint32
// BE image type (1 JPEG, 2 PNG, 3 WEBP), the output id NUL-padded to 24
// bytes, then img.
func EncodeComfy(outputID string, f frame.Format, img []byte) ([]byte, error) {
	b, err := ComfyPrefix(outputID, f, len(img))
	if err != nil {
		return nil, err
	}
	return append(b, img...), nil
}

// ComfyPrefix is the seed node's header that comes before the image. Its
// capacity leaves room for extra more bytes.
func ComfyPrefix(outputID string, f frame.Format, extra int) ([]byte, error) {
	if err := subject.ValidateOutputID(outputID); err != nil {
		return nil, err
	}
	if !f.Valid() {
		return nil, fmt.Errorf("%w: image type %d; allowed: 1 (jpeg), 2 (png), 3 (webp)", frame.ErrInvalid, uint32(f))
	}
	b := make([]byte, ComfyHeaderSize, ComfyHeaderSize+extra)
	binary.BigEndian.PutUint32(b[0:], EventPreviewImage)
	binary.BigEndian.PutUint32(b[4:], uint32(f))
	copy(b[8:32], outputID)
	return b, nil
}

// DecodeComfy parses a seed node frame.
func DecodeComfy(b []byte) (ComfyFrame, error) {
	if len(b) < ComfyHeaderSize {
		return ComfyFrame{}, fmt.Errorf("%w: comfydeploy frame of %d bytes is shorter than its %d-byte header", ErrMalformed, len(b), ComfyHeaderSize)
	}
	fr := ComfyFrame{
		Event:  binary.BigEndian.Uint32(b[0:]),
		Format: frame.Format(binary.BigEndian.Uint32(b[4:])),
		Image:  b[ComfyHeaderSize:],
	}
	if fr.Event != EventPreviewImage {
		return ComfyFrame{}, fmt.Errorf("%w: comfydeploy event type %d; want %d", ErrMalformed, fr.Event, EventPreviewImage)
	}
	if !fr.Format.Valid() {
		return ComfyFrame{}, fmt.Errorf("%w: comfydeploy image type %d; want 1..3", ErrMalformed, uint32(fr.Format))
	}
	id := b[8:32]
	if i := bytes.IndexByte(id, 0); i >= 0 {
		if bytes.IndexFunc(id[i:], func(r rune) bool { return r != 0 }) >= 0 {
			return ComfyFrame{}, fmt.Errorf("%w: comfydeploy output id has bytes after its NUL padding", ErrMalformed)
		}
		id = id[:i]
	}
	fr.OutputID = string(id)
	if err := subject.ValidateOutputID(fr.OutputID); err != nil {
		return ComfyFrame{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return fr, nil
}
