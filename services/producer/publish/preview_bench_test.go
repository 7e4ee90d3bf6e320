package publish

import (
	"bufio"
	"fmt"
	"image"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
)

// pilThumbnail runs testdata/pil_thumbnail.py, which shrinks with PIL's
// Image.thumbnail, so previews are compared with PIL in the same run, on
// the same pixels and the same machine load.
type pilThumbnail struct {
	in  io.WriteCloser
	out *bufio.Reader
}

func startPILThumbnail(b *testing.B) *pilThumbnail {
	b.Helper()
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import PIL").CombinedOutput(); err != nil {
		b.Fatalf("comparing with PIL needs %s with PIL (Debian python3-pil; make deps installs it): %v: %s", python, err, out)
	}
	cmd := exec.Command(python, "testdata/pil_thumbnail.py")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start PIL: %v", err)
	}
	b.Cleanup(func() {
		in.Close() // the helper ends at the end of its input
		if err := cmd.Wait(); err != nil {
			b.Errorf("PIL helper: %v", err)
		}
	})
	return &pilThumbnail{in: in, out: bufio.NewReader(out)}
}

// shrink has PIL shrink the RGB image in raw to side (and save it as WEBP
// at quality, unless 0) and returns the time it took, the preview's size
// and its WEBP bytes.
func (p *pilThumbnail) shrink(b *testing.B, raw string, w, h, side, quality int) (time.Duration, image.Point, int) {
	b.Helper()
	if _, err := fmt.Fprintf(p.in, "%s %d %d %d %d\n", raw, w, h, side, quality); err != nil {
		b.Fatalf("PIL request: %v", err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		b.Fatalf("PIL answer: %v", err)
	}
	var ns int64
	var size image.Point
	var n int
	if _, err := fmt.Sscanf(line, "%d %d %d %d\n", &ns, &size.X, &size.Y, &n); err != nil {
		b.Fatalf("PIL answered %q", line)
	}
	return time.Duration(ns), size, n
}

// scene is a w×h RGB image with smooth gradients, edges and fine detail,
// so that resampling has work of every kind.
func scene(w, h int) encode.Pixels {
	p := encode.Pixels{Width: w, Height: h, Channels: 3, Pix: make([]uint8, w*h*3)}
	seed := uint32(1)
	for y := range h {
		for x := range w {
			seed = seed*1664525 + 1013904223
			i := (y*w + x) * 3
			edge := uint8(0)
			if (x/64+y/64)%2 == 0 {
				edge = 60
			}
			p.Pix[i] = uint8(x*255/w) + edge/2
			p.Pix[i+1] = uint8(y*255/h) ^ uint8(seed>>28)
			p.Pix[i+2] = uint8((x+y)*255/(w+h)) + edge
		}
	}
	return p
}

// BenchmarkShrinkVsPIL makes the previews of a 1024×1024 RGB image with
// imaging (Shrink, Catmull-Rom) and with PIL's Image.thumbnail in turn, one
// after the other in every iteration, so both see the same machine load:
// the resize alone, and the whole preview (resize, then WEBP at
// PreviewQuality). ns/op is the Go side alone; the metrics give both
// medians and their ratio.
func BenchmarkShrinkVsPIL(b *testing.B) {
	const side = 1024
	p := startPILThumbnail(b)
	px := scene(side, side)
	raw := filepath.Join(b.TempDir(), "scene.rgb")
	if err := os.WriteFile(raw, px.Pix, 0o600); err != nil {
		b.Fatal(err)
	}
	img, err := encode.Image(px)
	if err != nil {
		b.Fatal(err)
	}
	for _, preview := range []int{128, 256, 512} {
		for _, webp := range []bool{false, true} {
			name, quality := fmt.Sprintf("resize-%d", preview), 0
			if webp {
				name, quality = fmt.Sprintf("preview-webp-%d", preview), PreviewQuality
			}
			b.Run(name, func(b *testing.B) {
				var goTimes, pilTimes []time.Duration
				var got image.Point
				var gotBytes, pilBytes int
				var pilSize image.Point
				for b.Loop() {
					start := time.Now()
					m := Shrink(img, preview)
					if webp {
						out, err := encode.Encode(m, frame.WEBP, quality)
						if err != nil {
							b.Fatal(err)
						}
						gotBytes = len(out)
					}
					goTimes = append(goTimes, time.Since(start))
					got = m.Bounds().Size()
					b.StopTimer()
					var d time.Duration
					d, pilSize, pilBytes = p.shrink(b, raw, side, side, preview, quality)
					pilTimes = append(pilTimes, d)
					b.StartTimer()
				}
				if got != pilSize {
					b.Fatalf("preview %v; PIL's %v", got, pilSize)
				}
				g, pm := medianOf(goTimes), medianOf(pilTimes)
				b.ReportMetric(float64(g)/1e6, "go-ms")
				b.ReportMetric(float64(pm)/1e6, "pil-ms")
				b.ReportMetric(float64(g)/float64(pm), "time/pil")
				if webp {
					b.ReportMetric(float64(gotBytes), "bytes")
					b.ReportMetric(float64(pilBytes), "pil-bytes")
				}
			})
		}
	}
}

func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
