package encode

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/HugoSmits86/nativewebp"
	"github.com/framecast/framecast/shared/frame"
)

// Side limits of the formats' headers.
const (
	maxSideJPEG = 65535
	maxSideWEBP = 16383
)

// webpMethod is libwebp's speed/size trade-off, 4 as PIL's default.
const webpMethod = 4

// encodeJPEG and encodeWEBP are the lossy encoders chosen at build time:
// encoders_go.go (pure Go, the default) or encoders_turbo.go (cgo, -tags
// turbo). Both write the whole image to buf and only then return.

// pngEncoder reuses its compression buffers across calls; png.Encoder is
// safe for concurrent use with a concurrency-safe BufferPool.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

func check(f frame.Format, quality int) error {
	if !f.Valid() {
		return fmt.Errorf("%w: %s is unknown; allowed: jpeg, png, webp", ErrInvalid, f)
	}
	if quality < 1 || quality > 100 {
		return fmt.Errorf("%w: quality %d is out of range; allowed: 1..100", ErrInvalid, quality)
	}
	return nil
}

// Encode encodes img as f at quality (1..100) the way the seed node does:
// see the package doc for each format's settings. The image is read, never
// modified.
func Encode(img image.Image, f frame.Format, quality int) ([]byte, error) {
	if err := check(f, quality); err != nil {
		return nil, err
	}
	return encode(img, f, quality)
}

func encode(img image.Image, f frame.Format, quality int) ([]byte, error) {
	if img == nil {
		return nil, fmt.Errorf("%w: image is nil", ErrInvalid)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("%w: image is %dx%d; width and height must be positive", ErrInvalid, w, h)
	}
	if w > MaxPixels/h {
		return nil, fmt.Errorf("%w: %dx%d is over %d pixels", ErrTooLarge, w, h, MaxPixels)
	}
	var buf bytes.Buffer
	switch f {
	case frame.JPEG:
		if w > maxSideJPEG || h > maxSideJPEG {
			return nil, fmt.Errorf("%w: %dx%d is over JPEG's limit of %d per side", ErrTooLarge, w, h, maxSideJPEG)
		}
		if err := encodeJPEG(&buf, img, quality); err != nil {
			return nil, fmt.Errorf("encode jpeg: %w", err)
		}
	case frame.PNG:
		if err := pngEncoder.Encode(&buf, img); err != nil {
			return nil, fmt.Errorf("encode png: %w", err)
		}
	case frame.WEBP:
		if w > maxSideWEBP || h > maxSideWEBP {
			return nil, fmt.Errorf("%w: %dx%d is over WEBP's limit of %d per side", ErrTooLarge, w, h, maxSideWEBP)
		}
		if quality == 100 {
			// forWEBP also keeps *image.Paletted away from nativewebp, whose
			// colour-indexed output libwebp cannot decode (v0.9.3).
			// nativewebp ignores write errors; a bytes.Buffer has none, and
			// the check below catches a stream it did not finish.
			if err := nativewebp.Encode(&buf, forWEBP(img), nil); err != nil {
				return nil, fmt.Errorf("encode lossless webp: %w", err)
			}
			if err := checkRIFF(buf.Bytes()); err != nil {
				return nil, fmt.Errorf("encode lossless webp: %w", err)
			}
			break
		}
		if err := encodeWEBP(&buf, img, quality); err != nil {
			return nil, fmt.Errorf("encode webp: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// checkRIFF checks that b is a complete RIFF WEBP container.
func checkRIFF(b []byte) error {
	if len(b) < 20 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return fmt.Errorf("output is not a WEBP stream (%d bytes)", len(b))
	}
	if n := int(uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24); n+8 != len(b) {
		return fmt.Errorf("RIFF size is %d; want %d", n+8, len(b))
	}
	return nil
}

// forWEBP returns img as nativewebp and gen2brain/webp need it. They read
// the Pix of an *image.RGBA or *image.NRGBA as-is, as straight (not
// premultiplied) RGBA with a stride of 4*width, so anything else — a
// sub-image, or translucent premultiplied RGBA — is copied to a tight NRGBA.
func forWEBP(img image.Image) image.Image {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.NRGBA:
		if m.Stride == 4*b.Dx() && len(m.Pix) == 4*b.Dx()*b.Dy() {
			return m
		}
	case *image.RGBA:
		if m.Stride == 4*b.Dx() && len(m.Pix) == 4*b.Dx()*b.Dy() && m.Opaque() {
			return m
		}
	}
	n := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(n, n.Rect, img, b.Min, draw.Src)
	return n
}

// Batch encodes every image of imgs as Encode does, in parallel on up to
// runtime.GOMAXPROCS(0) goroutines, and returns the outputs in batch
// order. It stops starting new images once ctx is done or an image fails,
// waits for the images in progress, and returns only after all of its
// goroutines have ended.
//
// If images fail, the error is a *BatchError for the lowest failing index
// (images are started in order, so every image before it was encoded). If
// ctx ends first, the error wraps ctx's cause. Either way no outputs are
// returned.
func Batch(ctx context.Context, imgs []image.Image, f frame.Format, quality int) ([][]byte, error) {
	if err := check(f, quality); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("encode batch of %d: %w", len(imgs), context.Cause(ctx))
	}
	out := make([][]byte, len(imgs))
	var (
		next    atomic.Int64
		stop    atomic.Bool
		mu      sync.Mutex
		first   *BatchError
		stopped = context.AfterFunc(ctx, func() { stop.Store(true) })
		wg      sync.WaitGroup
	)
	defer stopped()
	for range min(runtime.GOMAXPROCS(0), len(imgs)) {
		wg.Go(func() {
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(imgs) {
					return
				}
				b, err := encode(imgs[i], f, quality)
				if err != nil {
					stop.Store(true)
					mu.Lock()
					if first == nil || i < first.Index {
						first = &BatchError{Index: i, Err: err}
					}
					mu.Unlock()
					continue
				}
				out[i] = b
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if int(next.Load()) < len(imgs) { // only ctx stops workers early without an error
		return nil, fmt.Errorf("encode batch of %d: %w", len(imgs), context.Cause(ctx))
	}
	return out, nil
}
