package publish

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"runtime"

	"github.com/disintegration/imaging"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
)

// Bounds and encoding of previews.
const (
	// MinPreview and MaxPreview bound a preview's longest side in pixels.
	MinPreview = 16
	MaxPreview = 1024
	// PreviewQuality is the WEBP quality previews are encoded at (lossy).
	PreviewQuality = 75
)

// PreviewFilter is the resampling filter of previews: Catmull-Rom, the
// bicubic filter PIL's Image.thumbnail uses by default.
var PreviewFilter = imaging.CatmullRom

// checkPreview checks a preview side: 0 (no previews) or
// MinPreview..MaxPreview.
func checkPreview(side int) error {
	if side != 0 && (side < MinPreview || side > MaxPreview) {
		return fmt.Errorf("%w: previews %d; allowed: 0 (none) or %d..%d, the preview's longest side in pixels", ErrInvalid, side, MinPreview, MaxPreview)
	}
	return nil
}

// reducingGap is how much larger than the preview an image must stay
// after its first, box-filtered reduction by a whole factor: the second
// step, PreviewFilter, then resamples at most about this factor. PIL's
// Image.thumbnail uses the same two steps with its default 2.0.
const reducingGap = 2

// Shrink returns img scaled so that its longest side is side, keeping its
// aspect ratio, in PIL's Image.thumbnail's two steps: a box-filtered
// reduction by the largest whole factor that keeps the image at least
// reducingGap times the preview's size, then PreviewFilter. An image no
// larger than side × side is returned as a copy of its own size: previews
// are never enlarged.
func Shrink(img image.Image, side int) image.Image {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= side && sh <= side {
		return imaging.Clone(img)
	}
	w, h := side, side // the preview's size, as imaging.Fit computes it
	if sw > sh {
		h = max(1, int(float64(side)*float64(sh)/float64(sw)))
	} else {
		w = max(1, int(float64(side)*float64(sw)/float64(sh)))
	}
	if fx, fy := max(1, sw/w/reducingGap), max(1, sh/h/reducingGap); fx > 1 || fy > 1 {
		img = imaging.Resize(img, sw/fx, sh/fy, imaging.Box)
	}
	return imaging.Resize(img, w, h, PreviewFilter)
}

// previewsOf returns the previews of imgs: each shrunk to side and encoded
// as WEBP at PreviewQuality, in parallel (encode.Batch).
func previewsOf(ctx context.Context, imgs []image.Image, side int) ([]Frame, error) {
	small := make([]image.Image, len(imgs))
	for i, m := range imgs {
		small[i] = Shrink(m, side)
	}
	data, err := encode.Batch(ctx, small, frame.WEBP, PreviewQuality)
	if err != nil {
		return nil, err
	}
	out := make([]Frame, len(small))
	for i, m := range small {
		r := m.Bounds()
		out[i] = Frame{Data: data[i], Format: frame.WEBP, Width: r.Dx(), Height: r.Dy()}
	}
	return out, nil
}

// Preview returns the preview of a decoded image (see Batch.Previews):
// shrunk to side and encoded as WEBP at PreviewQuality.
func Preview(ctx context.Context, img image.Image, side int) (Frame, error) {
	if err := checkPreview(side); err != nil {
		return Frame{}, err
	}
	if side == 0 {
		return Frame{}, fmt.Errorf("%w: previews 0 asks for none", ErrInvalid)
	}
	p, err := previewsOf(ctx, []image.Image{img}, side)
	if err != nil {
		return Frame{}, err
	}
	return p[0], nil
}

// Previews returns a preview of every frame (see Batch.Previews), decoding
// them GOMAXPROCS at a time, so a batch of large images never holds more
// than that many decoded at once. Errors about an image that does not
// decode wrap ErrInvalid.
func Previews(ctx context.Context, frames []Frame, side int) ([]Frame, error) {
	if err := checkPreview(side); err != nil || side == 0 {
		return nil, err
	}
	out := make([]Frame, 0, len(frames))
	step := runtime.GOMAXPROCS(0)
	for start := 0; start < len(frames); start += step {
		chunk := frames[start:min(start+step, len(frames))]
		imgs := make([]image.Image, len(chunk))
		for j, f := range chunk {
			m, _, err := image.Decode(bytes.NewReader(f.Data))
			if err != nil {
				return nil, fmt.Errorf("%w: image %d does not decode for its preview: %w", ErrInvalid, start+j, err)
			}
			imgs[j] = m
		}
		p, err := previewsOf(ctx, imgs, side)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: preview: %w", ErrInvalid, err)
		}
		out = append(out, p...)
	}
	return out, nil
}
