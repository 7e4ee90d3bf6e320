package encode

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/framecast/framecast/shared/frame"
	"github.com/gen2brain/webp"
)

// benchSide is the side of the benchmark image, a 1024×1024 RGB photo.
const benchSide = 1024

// TestWriteBenchImage writes the benchmark image, raw RGB bytes in H,W,C
// order (1024×1024×3), to $FRAMECAST_BENCH_IMAGE for bench/pil_encode.py,
// so Go and PIL encode byte-identical input; unset, to a temporary file.
// Either way it reads the file back: the image is the same on every run.
func TestWriteBenchImage(t *testing.T) {
	path := os.Getenv("FRAMECAST_BENCH_IMAGE")
	if path == "" {
		path = filepath.Join(t.TempDir(), "bench.rgb")
	}
	want := photo(benchSide, benchSide)
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != benchSide*benchSide*3 || !bytes.Equal(got, photo(benchSide, benchSide)) {
		t.Errorf("%s holds %d bytes that differ from a second rendering; want the same %d bytes", path, len(got), benchSide*benchSide*3)
	}
}

func benchImage(b *testing.B) image.Image {
	b.Helper()
	return mustImage(b, Pixels{Width: benchSide, Height: benchSide, Channels: 3, Pix: photo(benchSide, benchSide)})
}

func BenchmarkEncode(b *testing.B) {
	img := benchImage(b)
	webp.Init() // compile the WebAssembly module outside the timings
	for _, bb := range []struct {
		name    string
		format  frame.Format
		quality int
	}{
		{"jpeg-q80", frame.JPEG, 80},
		{"png", frame.PNG, 80},
		{"webp-q80", frame.WEBP, 80},
		{"webp-q100-lossless", frame.WEBP, 100},
	} {
		b.Run(bb.name, func(b *testing.B) {
			var out []byte
			for b.Loop() {
				var err error
				if out, err = Encode(img, bb.format, bb.quality); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(out)), "bytes/frame")
		})
	}
}

// BenchmarkWEBPLosslessLibwebp is for comparison with webp-q100-lossless:
// libwebp's own lossless encoder (method 4) through wazero.
func BenchmarkWEBPLosslessLibwebp(b *testing.B) {
	img := benchImage(b)
	webp.Init()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := webp.Encode(&buf, img, webp.Options{Lossless: true, Method: webpMethod}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/frame")
}

// BenchmarkBatch8 encodes 8 frames as WEBP q80: one op is the whole batch,
// so ns/op is its wall time, parallel (Batch) against one after another.
func BenchmarkBatch8(b *testing.B) {
	img := benchImage(b)
	webp.Init()
	imgs := make([]image.Image, 8)
	for i := range imgs {
		imgs[i] = img
	}
	b.Run("parallel", func(b *testing.B) {
		var out [][]byte
		for b.Loop() {
			var err error
			if out, err = Batch(context.Background(), imgs, frame.WEBP, 80); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(out[0])), "bytes/frame")
	})
	b.Run("sequential", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			for _, m := range imgs {
				var err error
				if out, err = Encode(m, frame.WEBP, 80); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(len(out)), "bytes/frame")
	})
}

// BenchmarkSplitFloat32LE converts one 1024×1024 RGB float32 frame.
func BenchmarkSplitFloat32LE(b *testing.B) {
	rgb := photo(benchSide, benchSide)
	raw := make([]byte, 0, 4*len(rgb))
	for _, v := range rgb {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v)/255))
	}
	s := Shape{Batch: 1, Height: benchSide, Width: benchSide, Channels: 3}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := SplitFloat32LE(raw, s); err != nil {
			b.Fatal(err)
		}
	}
}
