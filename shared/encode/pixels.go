package encode

import (
	"encoding/binary"
	"fmt"
	"image"
	"math"
	"math/bits"
)

// MaxPixels is the largest image, in pixels (width × height), that this
// package accepts as input or from Probe: 8192×8192. It bounds the memory a
// single request can make a host allocate.
const MaxPixels = 1 << 26

// Pixels is one image of 8-bit samples, interleaved in H,W,C order: row y,
// column x, channel c is Pix[(y*Width+x)*Channels+c]. Channels is 1 (gray),
// 3 (RGB) or 4 (RGBA, alpha not premultiplied).
type Pixels struct {
	Width, Height, Channels int
	Pix                     []uint8
}

// Shape is the shape of a raw B,H,W,C tensor, ComfyUI's IMAGE layout.
type Shape struct {
	Batch, Height, Width, Channels int
}

// validate checks the shape and returns the number of samples in one image.
func (s Shape) validate() (int, error) {
	switch {
	case s.Batch <= 0:
		return 0, fmt.Errorf("%w: batch %d is not positive", ErrInvalid, s.Batch)
	case s.Width <= 0:
		return 0, fmt.Errorf("%w: width %d is not positive", ErrInvalid, s.Width)
	case s.Height <= 0:
		return 0, fmt.Errorf("%w: height %d is not positive", ErrInvalid, s.Height)
	}
	switch s.Channels {
	case 1, 3, 4:
	default:
		return 0, fmt.Errorf("%w: channels %d is not supported; allowed: 1, 3, 4", ErrInvalid, s.Channels)
	}
	if s.Width > MaxPixels/s.Height {
		return 0, fmt.Errorf("%w: %dx%d is over %d pixels", ErrTooLarge, s.Width, s.Height, MaxPixels)
	}
	return s.Width * s.Height * s.Channels, nil
}

// size returns the byte size of a batch of n images of per samples of
// elem bytes each, or an error if it overflows.
func (s Shape) size(per, elem int) (int, error) {
	hi, lo := bits.Mul64(uint64(per*elem), uint64(s.Batch))
	if hi != 0 || lo > math.MaxInt {
		return 0, fmt.Errorf("%w: batch %d of %dx%dx%d is too large", ErrTooLarge, s.Batch, s.Width, s.Height, s.Channels)
	}
	return int(lo), nil
}

func (s Shape) checkLen(got, per, elem int, dtype string) error {
	want, err := s.size(per, elem)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s body is %d bytes; expected %d (batch %d × height %d × width %d × channels %d × %d)",
			ErrInvalid, dtype, got, want, s.Batch, s.Height, s.Width, s.Channels, elem)
	}
	return nil
}

// SplitUint8 cuts raw, a uint8 tensor of shape s, into its images. It does
// not copy: the images' Pix alias raw.
func SplitUint8(raw []byte, s Shape) ([]Pixels, error) {
	per, err := s.validate()
	if err != nil {
		return nil, err
	}
	if err := s.checkLen(len(raw), per, 1, "uint8"); err != nil {
		return nil, err
	}
	return split(raw, s, per), nil
}

// SplitFloat32LE converts raw, a little-endian float32 tensor of shape s
// with values 0..1, into 8-bit images as the seed does (see FromFloat32).
// The result shares one new buffer of len(raw)/4 bytes; raw is not kept.
func SplitFloat32LE(raw []byte, s Shape) ([]Pixels, error) {
	per, err := s.validate()
	if err != nil {
		return nil, err
	}
	if err := s.checkLen(len(raw), per, 4, "float32"); err != nil {
		return nil, err
	}
	buf := make([]uint8, len(raw)/4)
	FromFloat32LE(buf, raw)
	return split(buf, s, per), nil
}

func split(buf []uint8, s Shape, per int) []Pixels {
	out := make([]Pixels, s.Batch)
	for i := range out {
		out[i] = Pixels{Width: s.Width, Height: s.Height, Channels: s.Channels, Pix: buf[i*per : (i+1)*per : (i+1)*per]}
	}
	return out
}

// FromFloat32 converts min(len(dst), len(src)) values as the seed does,
// uint8(clip(255*x, 0, 255)): the product is a float32, truncated toward
// zero, and NaN becomes 0. It returns the number of values converted.
func FromFloat32(dst []uint8, src []float32) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, x := range src {
		dst[i] = toUint8(x)
	}
	return n
}

// FromFloat32LE is FromFloat32 for src holding little-endian float32
// values, as they arrive over the wire; it reads them in place, without
// copying src into a []float32. It converts min(len(dst), len(src)/4)
// values and returns that number.
func FromFloat32LE(dst []uint8, src []byte) int {
	n := min(len(dst), len(src)/4)
	dst, src = dst[:n], src[:4*n]
	for i := range dst {
		dst[i] = toUint8(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
	}
	return n
}

func toUint8(x float32) uint8 {
	v := 255 * x
	switch {
	case v >= 255:
		return 255
	case v > 0:
		return uint8(v)
	}
	return 0 // v <= 0 or NaN
}

// Validate reports whether p is a well-formed image: positive size, 1, 3
// or 4 channels, at most MaxPixels, and len(Pix) == Width*Height*Channels.
func (p Pixels) Validate() error {
	per, err := Shape{Batch: 1, Height: p.Height, Width: p.Width, Channels: p.Channels}.validate()
	if err != nil {
		return err
	}
	if len(p.Pix) != per {
		return fmt.Errorf("%w: pixels are %d bytes; expected %d (height %d × width %d × channels %d)",
			ErrInvalid, len(p.Pix), per, p.Height, p.Width, p.Channels)
	}
	return nil
}

// Image returns p as a standard image: *image.Gray for 1 channel and
// *image.NRGBA for 4, both sharing p.Pix, and for 3 channels a new
// *image.RGBA with opaque alpha (the layout every encoder here reads
// fastest).
func Image(p Pixels) (image.Image, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	r := image.Rect(0, 0, p.Width, p.Height)
	switch p.Channels {
	case 1:
		return &image.Gray{Pix: p.Pix, Stride: p.Width, Rect: r}, nil
	case 4:
		return &image.NRGBA{Pix: p.Pix, Stride: 4 * p.Width, Rect: r}, nil
	}
	m := image.NewRGBA(r)
	d, s := m.Pix, p.Pix
	for len(s) >= 3 && len(d) >= 4 {
		d[0], d[1], d[2], d[3] = s[0], s[1], s[2], 0xff
		d, s = d[4:], s[3:]
	}
	return m, nil
}
