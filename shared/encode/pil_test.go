package encode

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/frame"
)

// pilServer runs testdata/pil_serve.py, which encodes with PIL exactly as
// the seed node does, so the Go encoders are compared with PIL in the same
// run, on the same bytes and the same machine load.
type pilServer struct {
	in  io.WriteCloser
	out *bufio.Reader
	dir string
	raw map[string]string // image name → raw file
}

// startPIL starts the server, which ends when the test does. It fails
// when /usr/bin/python3 has no PIL (make deps installs Debian's).
func startPIL(tb testing.TB) *pilServer {
	tb.Helper()
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import PIL").CombinedOutput(); err != nil {
		tb.Fatalf("comparing with PIL needs %s with PIL (Debian python3-pil; make deps installs it): %v: %s", python, err, out)
	}
	cmd := exec.Command(python, "testdata/pil_serve.py")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start PIL: %v", err)
	}
	tb.Cleanup(func() {
		in.Close() // the server ends at the end of its input
		if err := cmd.Wait(); err != nil {
			tb.Errorf("PIL server: %v", err)
		}
	})
	return &pilServer{in: in, out: bufio.NewReader(out), dir: tb.TempDir(), raw: map[string]string{}}
}

// encode has PIL encode p, known by name, as f at quality, and returns how
// long PIL's save took and its output.
func (s *pilServer) encode(tb testing.TB, name string, p Pixels, f frame.Format, quality int) (time.Duration, []byte) {
	tb.Helper()
	path, ok := s.raw[name]
	if !ok {
		path = filepath.Join(s.dir, name+".raw")
		if err := os.WriteFile(path, p.Pix, 0o600); err != nil {
			tb.Fatal(err)
		}
		s.raw[name] = path
	}
	mode := map[int]string{1: "L", 3: "RGB", 4: "RGBA"}[p.Channels]
	if _, err := fmt.Fprintf(s.in, "%s %d %d %s %s %d\n", path, p.Width, p.Height, mode, strings.ToUpper(f.String()), quality); err != nil {
		tb.Fatalf("PIL request: %v", err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		tb.Fatalf("PIL answer: %v", err)
	}
	var ns, n int64
	if _, err := fmt.Sscanf(line, "%d %d\n", &ns, &n); err != nil {
		tb.Fatalf("PIL answered %q", line)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.out, b); err != nil {
		tb.Fatalf("PIL output: %v", err)
	}
	return time.Duration(ns), b
}

// TestLossyMatchesPIL holds the lossy encoders to the seed's output: for
// the same pixels, format and quality they must write the bytes PIL
// writes. The cgo build (-tags turbo) runs the same libjpeg-turbo and
// libwebp as PIL with PIL's settings; the pure-Go build runs the same
// libwebp under wazero, and a JPEG encoder of its own whose bytes differ.
func TestLossyMatchesPIL(t *testing.T) {
	s := startPIL(t)
	t.Logf("encoders: %s", Backend())
	tests := []struct {
		format   frame.Format
		quality  int
		channels int
	}{
		{frame.JPEG, 50, 3},
		{frame.JPEG, 80, 3},
		{frame.JPEG, 95, 3},
		{frame.JPEG, 80, 1},
		{frame.WEBP, 50, 3},
		{frame.WEBP, 80, 3},
		{frame.WEBP, 95, 3},
		{frame.WEBP, 80, 1},
		{frame.WEBP, 80, 4},
	}
	for _, tt := range tests {
		if tt.format == frame.JPEG && !Accelerated {
			// The pure-Go JPEG encoder (image/jpeg) writes other bytes
			// than libjpeg-turbo; only the turbo build is held to PIL's.
			continue
		}
		t.Run(fmt.Sprintf("%s-q%d-c%d", tt.format, tt.quality, tt.channels), func(t *testing.T) {
			p := testPixels(197, 131, tt.channels)
			got, err := Encode(mustImage(t, p), tt.format, tt.quality)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			_, want := s.encode(t, fmt.Sprintf("c%d", tt.channels), p, tt.format, tt.quality)
			if !bytes.Equal(got, want) {
				t.Errorf("got %d bytes; want PIL's %d bytes, identical", len(got), len(want))
			}
		})
	}
}

// BenchmarkVsPIL encodes the 1024×1024 benchmark image with the encoders
// of this build and with PIL in turn, one after the other in every
// iteration, so both see the same machine load. ns/op is the Go encoder
// alone; the metrics give both medians, their ratio and both sizes.
func BenchmarkVsPIL(b *testing.B) {
	s := startPIL(b)
	p := Pixels{Width: benchSide, Height: benchSide, Channels: 3, Pix: photo(benchSide, benchSide)}
	img := mustImage(b, p)
	for _, f := range []frame.Format{frame.JPEG, frame.WEBP} {
		for _, q := range []int{50, 80, 95} {
			b.Run(fmt.Sprintf("%s-q%d", f, q), func(b *testing.B) {
				// One untimed round first: the first WEBP encode of the
				// pure-Go build compiles its WebAssembly module.
				if _, err := Encode(img, f, q); err != nil {
					b.Fatal(err)
				}
				s.encode(b, "bench", p, f, q)
				var (
					goTimes, pilTimes []time.Duration
					out, pilOut       []byte
				)
				for b.Loop() {
					start := time.Now()
					var err error
					if out, err = Encode(img, f, q); err != nil {
						b.Fatal(err)
					}
					goTimes = append(goTimes, time.Since(start))
					b.StopTimer()
					var d time.Duration
					d, pilOut = s.encode(b, "bench", p, f, q)
					pilTimes = append(pilTimes, d)
					b.StartTimer()
				}
				g, pm := median(goTimes), median(pilTimes)
				b.ReportMetric(float64(g)/1e6, "go-ms")
				b.ReportMetric(float64(pm)/1e6, "pil-ms")
				b.ReportMetric(float64(g)/float64(pm), "time/pil")
				b.ReportMetric(float64(len(out)), "bytes")
				b.ReportMetric(float64(len(pilOut)), "pil-bytes")
				b.ReportMetric(float64(len(out))/float64(len(pilOut)), "bytes/pil")
			})
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
