package integration_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/shared/subject"
)

// The hostile load of TestHostileLoad, and its bounds (docs/reliability.md,
// "Hostile load").
const (
	hostileSlow      = 200     // uploads that declare 64 MiB and trickle
	hostileBombs     = 20      // decompression bombs in flight at once
	hostileMultipart = 4       // requests of 4,096 parts in flight at once
	hostileBudget    = 1 << 30 // the producer's default --max-inflight-bytes
	// hostileRSS is the documented bound on the producer's peak RSS: the
	// budget, and 512 MiB for the rest of the process and the garbage the
	// collector has not returned yet.
	hostileRSS = hostileBudget + 512<<20
	// hostileLatency is the longest an ordinary publish may take.
	hostileLatency = time.Second
)

// bombPNG is a PNG of w×h transparent RGBA pixels: a few hundred KiB that
// decode to 4·w·h bytes. Its image data, all zero bytes, is one deflated
// run of rows (ending in a sync flush, so it ends on a byte) repeated:
// the bomb is built without compressing, or holding, all of its bytes.
func bombPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	const rows = 16 // rows per deflated run; h must be a multiple
	var run bytes.Buffer
	fw, err := flate.NewWriter(&run, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(make([]byte, (1+4*w)*rows)) // filter type 0 and zero pixels
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	idat := []byte{0x78, 0x9C} // zlib header: deflate, default level
	for range h / rows {
		idat = append(idat, run.Bytes()...)
	}
	idat = append(idat, 0x03, 0x00) // a final, empty, fixed-Huffman block
	// Adler-32 of n zero bytes: a stays 1, b adds 1 per byte.
	n := uint32((1 + 4*w) * h)
	idat = binary.BigEndian.AppendUint32(idat, (n%65521)<<16|1)

	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 6 // 8 bits, RGBA
	for _, c := range []struct {
		typ  string
		data []byte
	}{{"IHDR", ihdr}, {"IDAT", idat}, {"IEND", nil}} {
		binary.Write(&b, binary.BigEndian, uint32(len(c.data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(c.typ))
		crc.Write(c.data)
		b.WriteString(c.typ)
		b.Write(c.data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	return b.Bytes()
}

// manyParts is a multipart body of n copies of img.
func manyParts(t testing.TB, n int, img []byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "image/png")
	h.Set("Content-Disposition", `form-data; name="image"`)
	for range n {
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(img)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

func smallPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = byte(i * 7)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// every calls f every d until ctx ends or f returns false.
func every(ctx context.Context, d time.Duration, f func() bool) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !f() {
			return
		}
	}
}

// tally counts answers by status and error code.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *tally) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.n))
	for k := range c.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s×%d ", k, c.n[k])
	}
	return strings.TrimSpace(b.String())
}

// hostilePost sends one request and returns its status and its error
// code, or "ok"; an answer that is not the documented JSON, or a 503
// without Retry-After, is an error.
func hostilePost(ctx context.Context, hc *http.Client, url, ctype string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, "ok", nil
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return resp.StatusCode, "", fmt.Errorf("status %d body %q is not the documented JSON", resp.StatusCode, b)
	}
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		return resp.StatusCode, e.Error.Code, fmt.Errorf("503 %s without Retry-After", e.Error.Code)
	}
	return resp.StatusCode, e.Error.Code, nil
}

// TestHostileLoad runs, all at once against one producer with its default
// limits, for 20 s: 200 uploads that each declare a 64 MiB raw body and
// send 1 KiB every 100 ms, 20 decompression bombs (8192×8192 PNGs of
// zeros, 265 KiB each, 256 MiB decoded) each sent again as soon as it is
// answered, and 4 multipart requests of 4,096 8×8 PNGs, sent again
// likewise. Through the load and until the last request is answered, the
// producer's peak RSS stays under hostileRSS; an ordinary publish every
// 200 ms answers 200 within hostileLatency and is stored; every hostile
// request gets 200 or 503 overloaded with Retry-After.
func TestHostileLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile load takes about a minute")
	}
	const load = 20 * time.Second
	env := topo.NewEnv(t, bins)
	n := env.StartNATS(topo.NATSOptions{})
	p := env.StartProducer("producer", n.URL(), "--ensure-stream")
	base := p.URL + "/v1/outputs/"
	addr := strings.TrimPrefix(p.URL, "http://")
	bomb := bombPNG(t, 8192, 8192)
	mpType, mpBody := manyParts(t, 4096, smallPNG(t, 8, 8))
	normal := smallPNG(t, 64, 64)
	t.Logf("bomb %d bytes, multipart %d bytes of 4096 parts", len(bomb), len(mpBody))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	// A test that fails early still ends its load before it returns, so
	// no goroutine reports after the test.
	defer func() {
		cancel()
		wg.Wait()
	}()

	// The slow uploads: each on its own connection, headers at once, then
	// the body a trickle.
	var slowOpen, slowCut atomic.Int64
	slowCtx, slowStop := context.WithCancel(ctx)
	defer slowStop()
	for i := range hostileSlow {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("slow upload %d: %v", i, err)
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v1/outputs/hostile-slow/images?width=4096&height=4096&channels=4&dtype=uint8 HTTP/1.1\r\n"+
				"Host: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", addr, 64<<20)
			slowOpen.Add(1)
			chunk := make([]byte, 1<<10)
			every(slowCtx, 100*time.Millisecond, func() bool {
				if _, err := c.Write(chunk); err != nil {
					slowCut.Add(1)
					return false
				}
				return true
			})
		})
	}
	for slowOpen.Load() < hostileSlow {
		time.Sleep(10 * time.Millisecond)
	}

	// Peak RSS is read from VmHWM at the end; samples show its course.
	var samples []int64
	var sampleMu sync.Mutex
	loadCtx, loadStop := context.WithTimeout(ctx, load)
	defer loadStop()
	wg.Go(func() {
		every(loadCtx, 250*time.Millisecond, func() bool {
			if rss, err := p.RSS(); err == nil {
				sampleMu.Lock()
				samples = append(samples, rss)
				sampleMu.Unlock()
			}
			return true
		})
	})

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var bombs, parts tally
	// Each sends its request again as soon as it is answered, until the
	// load ends; the last one is answered after.
	repeat := func(c *tally, url, ctype string, body []byte) {
		for loadCtx.Err() == nil {
			status, code, err := hostilePost(ctx, hc, url, ctype, body)
			if ctx.Err() != nil {
				return // the test ended early
			}
			if err != nil {
				t.Errorf("%s: %v", url, err)
				return
			}
			c.add(fmt.Sprintf("%d %s", status, code))
			if status != http.StatusOK && code != "overloaded" {
				t.Errorf("%s: %d %s; want 200 or 503 overloaded", url, status, code)
			}
		}
	}
	for range hostileBombs {
		wg.Go(func() { repeat(&bombs, base+"hostile-bomb/images", "image/png", bomb) })
	}
	for range hostileMultipart {
		wg.Go(func() { repeat(&parts, base+"hostile-parts/images", mpType, mpBody) })
	}

	// The ordinary publisher, on a client of its own.
	type answer struct {
		took time.Duration
		seq  uint64
	}
	var answers []answer
	oc := &http.Client{Timeout: 30 * time.Second}
	every(loadCtx, 200*time.Millisecond, func() bool {
		start := time.Now()
		resp, err := oc.Post(base+"hostile-normal/images", "image/png", bytes.NewReader(normal))
		if err != nil {
			t.Fatalf("ordinary publish: %v", err)
		}
		var ok struct {
			Frames []struct{ Seq uint64 } `json:"frames"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &ok) != nil || len(ok.Frames) != 1 {
			t.Fatalf("ordinary publish under load: %d %s; want 200 with one frame", resp.StatusCode, b)
		}
		answers = append(answers, answer{took, ok.Frames[0].Seq})
		return true
	})
	slowStop()
	wg.Wait()
	peak := peakRSS(t, p.PID())

	// Every ordinary frame was stored where its answer said.
	nc := n.Connect()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "OUTPUTS")
	if err != nil {
		t.Fatal(err)
	}
	var took []time.Duration
	for _, a := range answers {
		took = append(took, a.took)
		msg, err := st.GetMsg(context.Background(), a.seq)
		if err != nil || msg.Subject != subject.Frames("hostile-normal", "") || !bytes.Equal(msg.Data, normal) {
			t.Errorf("ordinary frame at seq %d: %v; want it stored on %s", a.seq, err, subject.Frames("hostile-normal", ""))
		}
	}
	slices.Sort(took)
	sampleMu.Lock()
	t.Logf("peak RSS %d MiB (bound %d MiB); RSS samples every 250 ms, max %d MiB over %d samples",
		peak>>20, int64(hostileRSS)>>20, slices.Max(samples)>>20, len(samples))
	sampleMu.Unlock()
	t.Logf("ordinary publishes: %d, p50 %v, p99 %v, max %v", len(took), took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
	t.Logf("bombs: %s; multipart: %s; slow uploads cut before the end: %d of %d", &bombs, &parts, slowCut.Load(), hostileSlow)

	if len(took) < int(load/(400*time.Millisecond)) {
		t.Errorf("%d ordinary publishes in %v; want one every 200 ms", len(took), load)
	}
	if worst := took[len(took)-1]; worst > hostileLatency {
		t.Errorf("slowest ordinary publish took %v; want under %v", worst, hostileLatency)
	}
	if peak > hostileRSS {
		t.Errorf("producer peak RSS %d MiB; want under %d MiB", peak>>20, int64(hostileRSS)>>20)
	}
	if p.Exited() {
		t.Fatal("the producer exited under the load")
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := p.WaitStatus(wctx, "/readyz", http.StatusOK); err != nil {
		t.Fatalf("producer after the load: %v", err)
	}
	for {
		v, ok := metric(wctx, p.URL, "framecast_producer_inflight_bytes")
		if ok && v == 0 {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("inflight_bytes is %v after every request ended; want 0", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProducerDeadlines: a body that stops arriving is answered 408
// body_timeout once --read-timeout has passed, and an idle keep-alive
// connection is closed after --idle-timeout.
func TestProducerDeadlines(t *testing.T) {
	env := topo.NewEnv(t, bins)
	n := env.StartNATS(topo.NATSOptions{})
	p := env.StartProducer("producer", n.URL(), "--ensure-stream", "--read-timeout=2s", "--idle-timeout=1s")
	addr := strings.TrimPrefix(p.URL, "http://")

	t.Run("stalled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/outputs/stall/images HTTP/1.1\r\nHost: %s\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n", addr)
		c.Write(make([]byte, 1000))
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body: %v; want 408", err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || json.Unmarshal(b, &e) != nil || e.Error.Code != "body_timeout" {
			t.Fatalf("stalled body: %d %s; want 408 body_timeout", resp.StatusCode, b)
		}
	})
	t.Run("idle connection", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("GET /healthz: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection: read %v; want EOF, the producer closing it", err)
		}
	})
}
