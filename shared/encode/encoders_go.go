//go:build !turbo

package encode

import (
	"bytes"
	"image"
	"image/jpeg"

	"github.com/gen2brain/webp"
)

// Accelerated reports whether JPEG and lossy WEBP are encoded by the
// system's libjpeg-turbo and libwebp through cgo (-tags turbo) rather than
// by the pure-Go fallback.
const Accelerated = false

// Backend names the encoders this binary was built with.
func Backend() string {
	return "pure Go: image/jpeg, libwebp under wazero (gen2brain/webp), nativewebp"
}

func encodeJPEG(buf *bytes.Buffer, img image.Image, quality int) error {
	return jpeg.Encode(buf, forJPEG(img), &jpeg.Options{Quality: quality})
}

// forJPEG returns img in a type image/jpeg converts fast. An NRGBA image
// is read as RGBA over the same bytes: image/jpeg reads only R, G and B
// there, so alpha is dropped rather than premultiplied into the colour.
func forJPEG(img image.Image) image.Image {
	if m, ok := img.(*image.NRGBA); ok {
		return &image.RGBA{Pix: m.Pix, Stride: m.Stride, Rect: m.Rect}
	}
	return img
}

func encodeWEBP(buf *bytes.Buffer, img image.Image, quality int) error {
	return webp.Encode(buf, forWEBP(img), webp.Options{Quality: quality, Method: webpMethod})
}
