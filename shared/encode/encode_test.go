package encode

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"runtime"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/frame"
	"github.com/gen2brain/webp"
)

// minPSNR is the least PSNR, in dB over the colour channels, that lossy
// output at quality 80 must keep on the photo-like test image. Measured:
// JPEG 34.9 (RGB) / 39.7 (gray), WEBP 34.4 (RGB) / 38.0 (gray).
const minPSNR = 32

func TestEncodeRoundTrip(t *testing.T) {
	tests := []struct {
		format  frame.Format
		quality int
		exact   bool // pixels must decode unchanged
	}{
		{frame.JPEG, 80, false},
		{frame.PNG, 80, true},
		{frame.WEBP, 80, false},
		{frame.WEBP, 100, true},
	}
	for _, channels := range []int{1, 3, 4} {
		// Odd sizes, so no codec's block size divides them.
		p := testPixels(197, 131, channels)
		m := mustImage(t, p)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s-q%d-c%d", tt.format, tt.quality, channels), func(t *testing.T) {
				t.Parallel()
				b, err := Encode(m, tt.format, tt.quality)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				in, err := Probe(b)
				if err != nil {
					t.Fatalf("Probe: %v", err)
				}
				if want := (Info{tt.format, 197, 131}); in != want {
					t.Errorf("Probe = %+v; want %+v", in, want)
				}
				got, want := decode(t, b, tt.format), want(p)
				if got.Rect != want.Rect {
					t.Fatalf("decoded bounds %v; want %v", got.Rect, want.Rect)
				}
				if tt.format == frame.JPEG {
					for i := 3; i < len(want.Pix); i += 4 {
						want.Pix[i] = 255 // JPEG drops alpha
					}
				}
				if tt.exact {
					for i := range want.Pix {
						if got.Pix[i] != want.Pix[i] {
							x, y := i/4%p.Width, i/4/p.Width
							t.Fatalf("pixel (%d,%d) channel %d = %d; want %d", x, y, i%4, got.Pix[i], want.Pix[i])
						}
					}
					return
				}
				if db := psnr(got, want); db < minPSNR {
					t.Errorf("PSNR %.2f dB; want at least %d", db, minPSNR)
				}
				for i := 3; i < len(want.Pix); i += 4 {
					if got.Pix[i] != want.Pix[i] {
						t.Fatalf("alpha at (%d,%d) = %d; want %d", i/4%p.Width, i/4/p.Width, got.Pix[i], want.Pix[i])
					}
				}
			})
		}
	}
}

// TestQualityHonoured checks that a higher quality buys bytes and fidelity.
func TestQualityHonoured(t *testing.T) {
	p := testPixels(160, 120, 3)
	m := mustImage(t, p)
	for _, f := range []frame.Format{frame.JPEG, frame.WEBP} {
		t.Run(f.String(), func(t *testing.T) {
			lo, err := Encode(m, f, 20)
			if err != nil {
				t.Fatal(err)
			}
			hi, err := Encode(m, f, 90)
			if err != nil {
				t.Fatal(err)
			}
			if len(lo) >= len(hi) {
				t.Errorf("q20 is %d bytes; want fewer than q90's %d", len(lo), len(hi))
			}
			w := want(p)
			if dlo, dhi := psnr(decode(t, lo, f), w), psnr(decode(t, hi, f), w); dlo >= dhi {
				t.Errorf("q20 PSNR %.2f dB; want below q90's %.2f dB", dlo, dhi)
			}
		})
	}
}

// TestEncodeImageTypes feeds Encode images that Image never makes: a
// sub-image (its Pix starts mid-buffer, with a wider stride), translucent
// premultiplied RGBA and paletted images.
func TestEncodeImageTypes(t *testing.T) {
	full := mustImage(t, testPixels(64, 48, 4)).(*image.NRGBA)
	sub := full.SubImage(image.Rect(10, 5, 40, 30))
	rgba := image.NewRGBA(image.Rect(0, 0, 30, 25))
	for i := range rgba.Pix {
		rgba.Pix[i] = uint8(i % 128) // premultiplied: colour ≤ alpha
		if i%4 == 3 {
			rgba.Pix[i] = 128
		}
	}
	pal := image.NewPaletted(image.Rect(0, 0, 30, 25), color.Palette{color.Black, color.White})
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i % 2)
	}
	tests := []struct {
		name string
		img  image.Image
	}{{"sub-image", sub}, {"premultiplied", rgba}, {"paletted", pal}}
	for _, tt := range tests {
		for _, f := range []frame.Format{frame.PNG, frame.WEBP} {
			t.Run(tt.name+"-"+f.String(), func(t *testing.T) {
				q := 100 // lossless: exact pixels
				if f == frame.WEBP && tt.name == "premultiplied" {
					q = 99 // the lossy path converts premultiplied input
				}
				b, err := Encode(tt.img, f, q)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				got := decode(t, b, f)
				bo := tt.img.Bounds()
				if got.Rect.Dx() != bo.Dx() || got.Rect.Dy() != bo.Dy() {
					t.Fatalf("decoded %v; want %dx%d", got.Rect, bo.Dx(), bo.Dy())
				}
				for y := range bo.Dy() {
					for x := range bo.Dx() {
						g := got.NRGBAAt(x, y)
						w := color.NRGBAModel.Convert(tt.img.At(bo.Min.X+x, bo.Min.Y+y)).(color.NRGBA)
						if !near(g, w, q) {
							t.Fatalf("pixel (%d,%d) = %v; want %v", x, y, g, w)
						}
					}
				}
			})
		}
	}
}

func near(a, b color.NRGBA, q int) bool {
	tol := 0
	if q < 100 {
		tol = 24
	}
	d := func(x, y uint8) bool { return int(x)-int(y) <= tol && int(y)-int(x) <= tol }
	return d(a.R, b.R) && d(a.G, b.G) && d(a.B, b.B) && a.A == b.A
}

func TestEncodeErrors(t *testing.T) {
	ok := image.NewGray(image.Rect(0, 0, 4, 4))
	tests := []struct {
		name    string
		img     image.Image
		format  frame.Format
		quality int
		wantErr error
		wantMsg string
	}{
		{"quality 0", ok, frame.JPEG, 0, ErrInvalid, "quality 0 is out of range; allowed: 1..100"},
		{"quality 101", ok, frame.WEBP, 101, ErrInvalid, "quality 101 is out of range; allowed: 1..100"},
		{"quality -5 png", ok, frame.PNG, -5, ErrInvalid, "quality -5 is out of range; allowed: 1..100"},
		{"format 0", ok, 0, 80, ErrInvalid, "format(0) is unknown; allowed: jpeg, png, webp"},
		{"format 4", ok, 4, 80, ErrInvalid, "format(4) is unknown"},
		{"nil image", nil, frame.PNG, 80, ErrInvalid, "image is nil"},
		{"empty image", image.NewGray(image.Rect(0, 0, 0, 3)), frame.PNG, 80, ErrInvalid, "image is 0x3"},
		{"webp too wide", image.NewGray(image.Rect(0, 0, 16384, 1)), frame.WEBP, 80, ErrTooLarge, "16384x1 is over WEBP's limit of 16383 per side"},
		{"webp lossless too tall", image.NewGray(image.Rect(0, 0, 1, 16384)), frame.WEBP, 100, ErrTooLarge, "over WEBP's limit"},
		{"jpeg too wide", image.NewGray(image.Rect(0, 0, 65536, 1)), frame.JPEG, 80, ErrTooLarge, "over JPEG's limit of 65535 per side"},
		{"over MaxPixels", image.NewGray(image.Rect(0, 0, 1<<14, 1<<12+1)), frame.PNG, 80, ErrTooLarge, "pixels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.img, tt.format, tt.quality)
			if b != nil {
				t.Errorf("got %d bytes; want none", len(b))
			}
			checkErr(t, "Encode", err, tt.wantErr, tt.wantMsg)
		})
	}
}

func TestBatchOrder(t *testing.T) {
	const n = 8
	imgs := make([]image.Image, n)
	for i := range imgs {
		imgs[i] = mustImage(t, testPixels(16+3*i, 9+i, 3)) // size identifies the index
	}
	for _, tt := range []struct {
		format  frame.Format
		quality int
	}{{frame.PNG, 80}, {frame.WEBP, 80}, {frame.WEBP, 100}, {frame.JPEG, 80}} {
		t.Run(fmt.Sprintf("%s-q%d", tt.format, tt.quality), func(t *testing.T) {
			before := runtime.NumGoroutine()
			out, err := Batch(context.Background(), imgs, tt.format, tt.quality)
			if err != nil {
				t.Fatalf("Batch: %v", err)
			}
			if len(out) != n {
				t.Fatalf("got %d outputs; want %d", len(out), n)
			}
			for i, b := range out {
				in, err := Probe(b)
				if err != nil {
					t.Fatalf("output %d: Probe: %v", i, err)
				}
				if in.Width != 16+3*i || in.Height != 9+i {
					t.Errorf("output %d is %dx%d; want %dx%d", i, in.Width, in.Height, 16+3*i, 9+i)
				}
				single, err := Encode(imgs[i], tt.format, tt.quality)
				if err != nil {
					t.Fatal(err)
				}
				if string(single) != string(b) {
					t.Errorf("output %d differs from Encode of image %d", i, i)
				}
			}
			checkGoroutines(t, before)
		})
	}
}

func TestBatchErrors(t *testing.T) {
	good := mustImage(t, testPixels(20, 10, 3))
	bad := image.NewGray(image.Rect(0, 0, 0, 0))
	batch := func(badAt ...int) []image.Image {
		imgs := make([]image.Image, 12)
		for i := range imgs {
			imgs[i] = good
		}
		for _, i := range badAt {
			imgs[i] = bad
		}
		return imgs
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		imgs      []image.Image
		format    frame.Format
		quality   int
		wantIndex int // -1: not a *BatchError
		wantErr   error
	}{
		{"first failing index wins", context.Background(), batch(9, 4, 11), frame.WEBP, 80, 4, ErrInvalid},
		{"last image", context.Background(), batch(11), frame.PNG, 80, 11, ErrInvalid},
		{"bad quality", context.Background(), batch(), frame.WEBP, 0, -1, ErrInvalid},
		{"bad format", context.Background(), batch(), 9, 80, -1, ErrInvalid},
		{"canceled", canceled, batch(), frame.WEBP, 80, -1, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			out, err := Batch(tt.ctx, tt.imgs, tt.format, tt.quality)
			if out != nil {
				t.Errorf("got %d outputs; want none", len(out))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v; want %v", err, tt.wantErr)
			}
			var be *BatchError
			if errors.As(err, &be) != (tt.wantIndex >= 0) || (be != nil && be.Index != tt.wantIndex) {
				t.Errorf("got error %v; want index %d", err, tt.wantIndex)
			}
			checkGoroutines(t, before)
		})
	}
}

// TestBatchCancelMidway cancels while a long batch runs: Batch must stop
// early and say why.
func TestBatchCancelMidway(t *testing.T) {
	img := mustImage(t, testPixels(256, 256, 3))
	imgs := make([]image.Image, 200)
	for i := range imgs {
		imgs[i] = img
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Batch(ctx, imgs, frame.WEBP, 80)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got error %v; want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Batch returned after %v; want soon after the deadline", d)
	}
}

// TestConcurrentWEBP runs many lossy WEBP encodes at once (with -race): the
// wazero runtime is shared, each call must get its own module instance.
func TestConcurrentWEBP(t *testing.T) {
	imgs := []image.Image{mustImage(t, testPixels(64, 40, 3)), mustImage(t, testPixels(40, 64, 4))}
	want := make([][]byte, len(imgs))
	for i, m := range imgs {
		b, err := Encode(m, frame.WEBP, 75)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = b
	}
	for i := range 16 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			b, err := Encode(imgs[i%2], frame.WEBP, 75)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(b) != string(want[i%2]) {
				t.Errorf("concurrent encode of image %d differs from the serial one", i%2)
			}
		})
	}
}

// TestWEBPBackend records which libwebp encodes: the embedded WebAssembly
// module run by wazero, or a system libwebp.so that gen2brain/webp loads
// when it can. Built with -tags nodynamic it must be wazero.
func TestWEBPBackend(t *testing.T) {
	err := webp.Dynamic()
	if err == nil {
		if nodynamic {
			t.Fatalf("system libwebp is in use; want wazero under -tags nodynamic")
		}
		t.Logf("WEBP backend: system libwebp.so (dynamic binary); build with -tags nodynamic to use wazero")
		return
	}
	t.Logf("WEBP backend: wazero (%v)", err)
}

// checkGoroutines fails if more goroutines run than before, allowing a
// moment for exiting ones to finish.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines run; want at most %d as before", runtime.NumGoroutine(), before)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
