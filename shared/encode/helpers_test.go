package encode

import (
	"bytes"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"
	"testing"

	"github.com/framecast/framecast/shared/frame"
	"github.com/gen2brain/webp"
	xwebp "golang.org/x/image/webp"
)

// photo returns a deterministic w×h RGB image (H,W,C) that compresses like
// a photograph: smooth lighting gradients, a soft-edged object, mid and
// fine texture, and per-pixel noise. The benchmarks and
// bench/pil_encode.py use its 1024×1024 output (see TestWriteBenchImage).
func photo(w, h int) []uint8 {
	pix := make([]uint8, 0, w*h*3)
	state := uint64(0x9e3779b97f4a7c15) // splitmix64
	noise := func() float64 {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		return float64(int(z>>56)-128) / 128 * 7 // ±7 levels
	}
	clamp := func(v float64) uint8 { return uint8(math.Max(0, math.Min(255, math.Round(v)))) }
	for y := range h {
		for x := range w {
			u, v := float64(x)/float64(w), float64(y)/float64(h)
			fx, fy := float64(x), float64(y)
			r := 50 + 140*v + 30*math.Sin(6.3*u+1)
			g := 80 + 90*(1-v) + 25*math.Sin(4.1*v+2*u)
			b := 170 - 110*v + 30*math.Cos(5.7*u*v+0.5)
			// A lit disc with a soft rim, and a darker hard-edged box.
			if d := math.Hypot(u-0.62, v-0.38); d < 0.2 {
				k := math.Min(1, (0.2-d)*25)
				r, g, b = r+70*k, g+55*k, b-20*k
			}
			if u > 0.12 && u < 0.35 && v > 0.55 && v < 0.85 {
				r, g, b = r*0.55, g*0.6, b*0.5
			}
			// Foliage-like mid texture, denser in the lower half.
			t := 16 * math.Sin(fx*0.21+3*math.Sin(fy*0.05)) * math.Sin(fy*0.17+2*math.Sin(fx*0.031))
			if v > 0.6 {
				t += 14 * math.Sin(fx*0.9+fy*0.35) * math.Cos(fy*0.6)
			}
			pix = append(pix, clamp(r+t+noise()), clamp(g+t+noise()), clamp(b+0.6*t+noise()))
		}
	}
	return pix
}

// testPixels returns the photo as a Pixels with the given channel count:
// gray is its luma, RGBA adds an alpha ramp from 128 to 255.
func testPixels(w, h, channels int) Pixels {
	rgb := photo(w, h)
	p := Pixels{Width: w, Height: h, Channels: channels, Pix: make([]uint8, 0, w*h*channels)}
	for i := 0; i < len(rgb); i += 3 {
		switch channels {
		case 1:
			p.Pix = append(p.Pix, uint8((299*int(rgb[i])+587*int(rgb[i+1])+114*int(rgb[i+2])+500)/1000))
		case 3:
			p.Pix = append(p.Pix, rgb[i:i+3]...)
		case 4:
			x := (i / 3) % w
			p.Pix = append(p.Pix, rgb[i], rgb[i+1], rgb[i+2], uint8(128+127*x/max(1, w-1)))
		}
	}
	return p
}

// want returns what p should decode to, as straight RGBA.
func want(p Pixels) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, p.Width, p.Height))
	for i := range p.Width * p.Height {
		d, s := m.Pix[4*i:4*i+4], p.Pix[p.Channels*i:]
		switch p.Channels {
		case 1:
			d[0], d[1], d[2], d[3] = s[0], s[0], s[0], 255
		case 3:
			d[0], d[1], d[2], d[3] = s[0], s[1], s[2], 255
		case 4:
			d[0], d[1], d[2], d[3] = s[0], s[1], s[2], s[3]
		}
	}
	return m
}

func mustImage(t testing.TB, p Pixels) image.Image {
	t.Helper()
	m, err := Image(p)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	return m
}

// decode decodes b as f. WEBP goes through libwebp's own RGBA output
// (webp.DecodeAll), as PIL's decoder does: webp.Decode and x/image/webp
// hand back raw 4:2:0 planes that Go would convert with JFIF's full-range
// matrix, not libwebp's, costing about 4 dB of PSNR that the encoder never
// lost. Lossless WEBP is checked with x/image/webp, whose VP8L output is
// exact NRGBA.
func decode(t testing.TB, b []byte, f frame.Format) *image.NRGBA {
	t.Helper()
	var (
		m   image.Image
		err error
	)
	switch f {
	case frame.JPEG:
		m, err = jpeg.Decode(bytes.NewReader(b))
	case frame.PNG:
		m, err = png.Decode(bytes.NewReader(b))
	case frame.WEBP:
		if string(b[12:16]) == "VP8L" {
			m, err = xwebp.Decode(bytes.NewReader(b))
			break
		}
		var all *webp.WEBP
		if all, err = webp.DecodeAll(bytes.NewReader(b)); err == nil {
			m = all.Image[0]
		}
	}
	if err != nil {
		t.Fatalf("decode %s: %v", f, err)
	}
	n := image.NewNRGBA(image.Rect(0, 0, m.Bounds().Dx(), m.Bounds().Dy()))
	draw.Draw(n, n.Rect, m, m.Bounds().Min, draw.Src)
	return n
}

// psnr is the peak signal-to-noise ratio of got against want over the
// colour channels, in dB.
func psnr(got, want *image.NRGBA) float64 {
	var se float64
	for i := 0; i < len(want.Pix); i += 4 {
		for c := range 3 {
			d := float64(got.Pix[i+c]) - float64(want.Pix[i+c])
			se += d * d
		}
	}
	mse := se / float64(len(want.Pix)/4*3)
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/mse)
}
