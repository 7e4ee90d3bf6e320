package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/frame"
)

// TestBudget: a holding over 1/64 of the budget fills at most three
// quarters of it; the last quarter still serves small holdings; a holding
// that could never fit is refused at once; a release wakes a waiter.
func TestBudget(t *testing.T) {
	const mib = 1 << 20
	b := newBudget(64 * mib) // small 1 MiB, large 48 MiB
	ctx := context.Background()
	short := 20 * time.Millisecond

	if err := b.acquire(ctx, 48*mib, 0, short); err != nil {
		t.Fatalf("large holding up to three quarters: %v; want nil", err)
	}
	if err := b.acquire(ctx, 2*mib, 0, short); !errors.Is(err, errOverloaded) {
		t.Fatalf("another large holding past three quarters: %v; want errOverloaded", err)
	}
	if err := b.acquire(ctx, 64<<10, 0, short); err != nil {
		t.Fatalf("small holding in the kept quarter: %v; want nil", err)
	}
	if err := b.acquire(ctx, 64<<10, mib, short); !errors.Is(err, errOverloaded) {
		t.Fatalf("growth of a holding already over 1 MiB: %v; want errOverloaded", err)
	}
	if err := b.acquire(ctx, 49*mib, 0, short); !errors.Is(err, errOverBudget) {
		t.Fatalf("holding over three quarters: %v; want errOverBudget", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(cctx, 2*mib, 0, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v; want context.Canceled", err)
	}

	got := make(chan error, 1)
	go func() { got <- b.acquire(ctx, 2*mib, 0, time.Hour) }()
	b.release(48 * mib)
	if err := <-got; err != nil {
		t.Fatalf("waiter after a release: %v; want nil", err)
	}
	if u, want := b.inUse(), int64(2*mib+64<<10); u != want {
		t.Fatalf("in use %d; want %d", u, want)
	}
}

// TestBudgetConcurrent: leases growing and shrinking from many goroutines,
// together asking for about twice the budget, never hold more than the
// budget, and everything is given back.
func TestBudgetConcurrent(t *testing.T) {
	const max = 1 << 20
	b := newBudget(max)
	var wg sync.WaitGroup
	var over atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			l := &lease{b: b, wait: time.Millisecond}
			for i := range 300 {
				n := int64((g*31+i*17)%97+1) << 8 // 256 B .. 24 KiB
				if err := l.grow(context.Background(), n); err != nil && !errors.Is(err, errOverloaded) {
					t.Errorf("grow: %v", err)
					return
				}
				b.mu.Lock()
				if b.used > b.max {
					over.Add(1)
				}
				b.mu.Unlock()
				if i%5 == 4 {
					l.release()
				}
			}
			l.release()
		})
	}
	wg.Wait()
	if over.Load() != 0 {
		t.Fatalf("the leases held more than the budget %d times; want never", over.Load())
	}
	if u := b.inUse(); u != 0 {
		t.Fatalf("budget holds %d after every lease was released; want 0", u)
	}
}

// stepReader delivers data step bytes per Read and records, at each call,
// how much the lease held against how much had been delivered.
type stepReader struct {
	data  []byte
	step  int
	sent  int
	l     *lease
	worst float64 // largest held / max(sent, minBuffer) seen
}

func (r *stepReader) Read(p []byte) (int, error) {
	r.worst = max(r.worst, float64(r.l.held)/float64(max(r.sent, minBuffer)))
	if r.sent == len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.sent:min(len(r.data), r.sent+r.step)])
	r.sent += n
	return n, nil
}

// TestLeaseReadEndsAtAFullBuffer: a body that fills its buffer exactly,
// its EOF on a call of its own, is not given a buffer twice its size; an
// empty body takes no buffer.
func TestLeaseReadEndsAtAFullBuffer(t *testing.T) {
	for _, size := range []int{0, minBuffer, 2 * minBuffer} {
		b := newBudget(64 << 20)
		l := &lease{b: b, wait: time.Second}
		data := bytes.Repeat([]byte{7}, size)
		buf, err := l.read(context.Background(), &stepReader{data: data, step: 10_000, l: l}, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, data) || cap(buf) != size || l.held != int64(size) {
			t.Errorf("a %d-byte body: read %d bytes into a buffer of %d, lease holds %d; want all of it in %d", size, len(buf), cap(buf), l.held, size)
		}
		l.release()
	}
}

// TestLeaseRead: a body buffer grows with the bytes that arrived, never
// to the declared size ahead of them, and never past the limit.
func TestLeaseRead(t *testing.T) {
	data := bytes.Repeat([]byte("framecast"), 300_000) // 2.7 MB
	tests := []struct {
		name  string
		limit int64
		want  int
	}{
		{"to EOF", 0, len(data)},
		{"exact size", int64(len(data)), len(data)},
		{"stops at the limit", 1 << 20, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(64 << 20)
			l := &lease{b: b, wait: time.Second}
			r := &stepReader{data: data, step: 10_000, l: l}
			buf, err := l.read(context.Background(), r, nil, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(buf) != tt.want || !bytes.Equal(buf, data[:tt.want]) {
				t.Fatalf("read %d bytes; want the first %d", len(buf), tt.want)
			}
			if r.worst > 2 {
				t.Fatalf("the lease held %.1f× the bytes that had arrived; want at most 2×", r.worst)
			}
			if l.held != int64(cap(buf)) || b.inUse() != l.held {
				t.Fatalf("lease holds %d, budget %d; want cap(buf) %d in both", l.held, b.inUse(), cap(buf))
			}
			if tt.limit > 0 && int64(cap(buf)) > tt.limit {
				t.Fatalf("buffer capacity %d; want at most the limit %d", cap(buf), tt.limit)
			}
			l.release()
			if b.inUse() != 0 {
				t.Fatalf("budget holds %d after release; want 0", b.inUse())
			}
		})
	}
}

// zeroPNG is a PNG of w×h transparent RGBA pixels: a few KiB that decode
// to 4·w·h bytes.
func zeroPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&b, image.NewNRGBA(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestResourceLimits: images over --max-pixels and requests that need
// more memory than one request may hold are refused with 413 before any
// pixel is decoded, and nothing is published.
func TestResourceLimits(t *testing.T) {
	small := Config{MaxPixels: 64 * 64}
	tight := Config{MaxInflightBytes: 4 << 20} // one request may hold 3 MiB
	ct, multi := multipartBody(t, []part{{"image/png", pngBytes(t, 8, 8)}, {"image/png", pngBytes(t, 65, 64)}})
	tests := []struct {
		name        string
		cfg         Config
		query       string
		ctype       string
		body        []byte
		status      int
		code, words string
	}{
		{"image at max pixels", small, "", "image/png", pngBytes(t, 64, 64), 200, "", ""},
		{"image over max pixels", small, "", "image/png", pngBytes(t, 65, 64), 413, CodeImageTooLarge, "the body is 65x64, 4160 pixels; allowed: at most 4096 pixels"},
		{"raw over max pixels", small, "width=65&height=64&channels=3&dtype=uint8", "application/octet-stream", make([]byte, 65*64*3), 413, CodeImageTooLarge, "each image is 65x64"},
		{"multipart part over max pixels", small, "", ct, multi, 413, CodeImageTooLarge, `part 1 (name "image") is 65x64`},
		{"decompression bomb over one request's share", tight, "", "image/png", zeroPNG(t, 1024, 1024), 413, CodeImageTooLarge, "one request may hold at most 3145728"},
		{"re-encode within the share", tight, "file_type=jpeg", "image/png", zeroPNG(t, 256, 256), 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.cfg)
			before := e.count(t)
			r := e.post(t, "limits", tt.query, tt.ctype, tt.body, nil)
			if r.status != tt.status || r.err.Error.Code != tt.code || !strings.Contains(r.err.Error.Message, tt.words) {
				t.Fatalf("got %d %s; want %d %q containing %q", r.status, r.raw, tt.status, tt.code, tt.words)
			}
			want := before
			if tt.status == 200 {
				want++
			}
			if got := e.count(t); got != want {
				t.Fatalf("stream has %d messages; want %d", got, want)
			}
			if u := e.srv.budget.inUse(); u != 0 {
				t.Fatalf("budget holds %d bytes after the request; want 0", u)
			}
		})
	}
}

// gauge reads framecast_producer_inflight_bytes.
func (e *env) inflight(t *testing.T) int64 {
	t.Helper()
	for _, line := range strings.Split(e.metrics(t), "\n") {
		if v, ok := strings.CutPrefix(line, "framecast_producer_inflight_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("inflight_bytes %q: %v", v, err)
			}
			return int64(f)
		}
	}
	t.Fatal("no framecast_producer_inflight_bytes in /metrics")
	return 0
}

// waitInflight polls the in-flight gauge until it is want.
func (e *env) waitInflight(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for got := e.inflight(t); got != want; got = e.inflight(t) {
		if time.Now().After(deadline) {
			t.Fatalf("inflight_bytes stayed %d; want %d", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOverloaded: while a slow upload holds most of the budget, a second
// large request waits, then gets 503 overloaded with Retry-After and
// publishes nothing; a small frame is still published at once; the slow
// upload, once its bytes arrive, is published whole.
func TestOverloaded(t *testing.T) {
	const mib = 1 << 20
	// One request may hold 12 MiB: a 4 MiB body and 5 MiB to encode it.
	e := newEnv(t, Config{MaxInflightBytes: 16 * mib, OverloadWait: 100 * time.Millisecond})
	before := e.count(t)
	q := "width=1024&height=1024&channels=4&dtype=uint8&file_type=png" // 4 MiB

	pr, pw := io.Pipe()
	slow := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/v1/outputs/slow/images?"+q, pr)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.ContentLength = 4 * mib
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- result{raw: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- result{status: resp.StatusCode, raw: string(b)}
	}()
	pixels := make([]byte, 4*mib)
	if _, err := pw.Write(pixels[:3*mib]); err != nil {
		t.Fatal(err)
	}
	// The buffer doubled to the declared size once 2 MiB had arrived.
	e.waitInflight(t, 4*mib)

	r := e.post(t, "big", q, "application/octet-stream", pixels, nil)
	if r.status != http.StatusServiceUnavailable || r.err.Error.Code != CodeOverloaded || r.header.Get("Retry-After") != "2" {
		t.Fatalf("second large request: %d %v %s; want 503 overloaded with Retry-After: 2", r.status, r.header, r.raw)
	}
	ok := e.post(t, "small", "", "image/png", pngBytes(t, 8, 8), nil)
	e.checkFrames(t, ok, "small", "", 1, frame.PNG, 8, 8)

	if _, err := pw.Write(pixels[3*mib:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-slow; got.status != http.StatusOK {
		t.Fatalf("slow upload: %d %s; want 200", got.status, got.raw)
	}
	if got := e.count(t) - before; got != 2 {
		t.Fatalf("stream gained %d messages; want 2 (the small frame and the slow upload)", got)
	}
	e.waitInflight(t, 0)
	if m := e.metrics(t); !strings.Contains(m, fmt.Sprintf(`framecast_producer_errors_total{code=%q} 1`, CodeOverloaded)) {
		t.Fatalf("metrics do not count one %s error:\n%s", CodeOverloaded, m)
	}
}

// TestEventOverloaded: an event's body is read under the budget too: with
// the budget full it gets 503 overloaded and is not stored; once memory is
// given back it is published.
func TestEventOverloaded(t *testing.T) {
	e := newEnv(t, Config{MaxInflightBytes: 1 << 20, OverloadWait: 50 * time.Millisecond})
	b := e.srv.budget
	if err := b.acquire(context.Background(), b.large, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"execution_start","data":{"prompt_id":"p1"}}`)
	before := e.count(t)
	r := e.post(t, eventsPath, "client_id=a", "application/json", body, nil)
	if r.status != http.StatusServiceUnavailable || r.err.Error.Code != CodeOverloaded || r.header.Get("Retry-After") == "" {
		t.Fatalf("event with the budget full: %d %s; want 503 overloaded with Retry-After", r.status, r.raw)
	}
	if e.count(t) != before {
		t.Fatal("the refused event was stored")
	}
	b.release(b.large)
	ok := e.post(t, eventsPath, "client_id=a", "application/json", body, nil)
	e.checkEvent(t, ok, "a", "execution_start", body)
}
