package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
)

// A frame's id travels in the first four pixels of its first row (RGB,
// 12 bytes: the 8-byte id and its CRC-32); the other pixels are noise
// derived from the id, so a larger image does not compress away.
const (
	// MinWidth is the narrowest image that carries an id.
	MinWidth = 4
	Channels = 3
)

// Pixels returns raw uint8 RGB pixels (H,W,C order, batch 1) of a w x h
// image carrying id; publish them with file_type=png so the encoding is
// lossless. w must be at least MinWidth.
func Pixels(id uint64, w, h int) []byte {
	b := make([]byte, w*h*Channels)
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[:8]))
	x := id*0x9E3779B97F4A7C15 | 1
	for i := 12; i < len(b); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// PNG returns a w x h PNG whose pixels carry id.
func PNG(id uint64, w, h int) []byte {
	p := Pixels(id, w, h)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		img.SetNRGBA(i%w, i/w, color.NRGBA{p[3*i], p[3*i+1], p[3*i+2], 0xFF})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding to memory cannot fail
	}
	return buf.Bytes()
}

// ID recovers the id from an encoded PNG frame.
func ID(encoded []byte) (uint64, error) {
	img, err := png.Decode(bytes.NewReader(encoded))
	if err != nil {
		return 0, fmt.Errorf("decode frame image: %w", err)
	}
	r := img.Bounds()
	if r.Dx() < MinWidth || r.Dy() < 1 {
		return 0, fmt.Errorf("frame image is %dx%d; want at least %dx1", r.Dx(), r.Dy(), MinWidth)
	}
	p := make([]byte, 0, MinWidth*Channels)
	for x := range MinWidth {
		c := color.NRGBAModel.Convert(img.At(r.Min.X+x, r.Min.Y)).(color.NRGBA)
		p = append(p, c.R, c.G, c.B)
	}
	id := binary.BigEndian.Uint64(p)
	if got, want := binary.BigEndian.Uint32(p[8:]), crc32.ChecksumIEEE(p[:8]); got != want {
		return 0, fmt.Errorf("frame image checksum %08x; want %08x (pixels %x)", got, want, p)
	}
	return id, nil
}
