package encode

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"github.com/framecast/framecast/shared/frame"
	"github.com/gen2brain/webp"
)

// Info describes an encoded image.
type Info struct {
	Format        frame.Format
	Width, Height int
}

// Probe identifies b as a JPEG, PNG or WEBP image by its leading bytes and
// decodes it fully, so a truncated or damaged image fails (ErrCorrupt), not
// only one with a bad header. It reads the header first and refuses an
// image over MaxPixels (ErrTooLarge) before allocating for it. Bytes of
// another type wrap ErrUnsupported. WEBP is decoded by libwebp (see the
// package doc), so the first WEBP probe in a process pays its start-up.
func Probe(b []byte) (Info, error) {
	in, _, err := Decode(b)
	return in, err
}

// Decode is Probe that also returns the decoded image.
func Decode(b []byte) (Info, image.Image, error) {
	var (
		in     Info
		config func([]byte) (image.Config, error)
		decode func([]byte) (image.Image, error)
	)
	switch {
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		in.Format = frame.JPEG
		config = func(b []byte) (image.Config, error) { return jpeg.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		in.Format = frame.PNG
		config = func(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		in.Format = frame.WEBP
		config = func(b []byte) (image.Config, error) { return webp.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return webp.Decode(bytes.NewReader(b)) }
	default:
		return Info{}, nil, fmt.Errorf("%w: %d bytes are not a JPEG, PNG or WEBP image", ErrUnsupported, len(b))
	}
	c, err := config(b)
	if err != nil {
		return Info{}, nil, fmt.Errorf("%w: %s header: %v", ErrCorrupt, in.Format, err)
	}
	if c.Width <= 0 || c.Height <= 0 {
		return Info{}, nil, fmt.Errorf("%w: %s header says %dx%d", ErrCorrupt, in.Format, c.Width, c.Height)
	}
	if c.Width > MaxPixels/c.Height {
		return Info{}, nil, fmt.Errorf("%w: %s is %dx%d, over %d pixels", ErrTooLarge, in.Format, c.Width, c.Height, MaxPixels)
	}
	m, err := decode(b)
	if err != nil {
		return Info{}, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, in.Format, err)
	}
	if got := m.Bounds(); got.Dx() != c.Width || got.Dy() != c.Height {
		return Info{}, nil, fmt.Errorf("%w: %s decodes to %dx%d; header says %dx%d", ErrCorrupt, in.Format, got.Dx(), got.Dy(), c.Width, c.Height)
	}
	in.Width, in.Height = c.Width, c.Height
	return in, m, nil
}
