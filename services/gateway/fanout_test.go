package gateway

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

func TestSharedSubscription(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	before := ns.NumSubscriptions()

	const n = 200
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dial(t, hs.URL, "/v1/ws?output_id=shared", nil)
		readControl(t, conns[i], wire.TypeHello)
	}
	// One for the output, one for the events.
	if got := srv.Subscriptions(); got != 2 {
		t.Fatalf("hub subscriptions with %d connections: got %d; want 2", n, got)
	}
	if got := ns.NumSubscriptions() - before; got != 2 {
		t.Fatalf("server subscriptions added by %d connections: got %d; want 2", n, got)
	}
	seq := p.publish("shared", "", img(1))
	for i, c := range conns {
		if h := readFrames(t, c, 1)[0]; h.Seq != seq {
			t.Fatalf("conn %d: got seq %d; want %d", i, h.Seq, seq)
		}
	}
	for _, c := range conns {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
	for i := 0; srv.Subscriptions() != 0 || ns.NumSubscriptions() != before; i++ {
		if i > 1000 {
			t.Fatalf("after all left: got %d hub, %d server subscriptions; want 0, %d", srv.Subscriptions(), ns.NumSubscriptions(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowClient: a client that stops reading does not hold back a fast
// one; once it reads again (slowly) it gets every frame, in order, through
// shared stream reads of what the ring evicted.
func TestSlowClient(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, func(c *Config) { c.CacheBytes = 1 << 20 })
	p := newPublisher(t, ns)

	fast := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
	slow := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
	readControl(t, fast, wire.TypeHello)
	readControl(t, slow, wire.TypeHello)

	const frames = 400
	const size = 48 << 10 // 19 MiB in all: more than socket buffers and the queue
	big := make([]byte, size)
	var want []uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range frames {
			big[0] = byte(i)
			want = append(want, p.publish("o", "", big))
		}
	}()
	got := readFrames(t, fast, frames) // the slow client has read nothing yet
	wg.Wait()
	checkSeqs(t, got, want)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// The stream (memory storage, same process) holds 19 MiB; the rings
	// hold at most their 1 MiB budget.
	if limit := uint64(3*frames*size + 64<<20); ms.HeapInuse > limit {
		t.Errorf("heap in use: got %d MiB; want below %d MiB", ms.HeapInuse>>20, limit>>20)
	}
	if got := metricValue(t, hs.URL, "framecast_gateway_ring_bytes"); got > 1<<20 {
		t.Errorf("ring bytes: got %v; want at most the 1 MiB budget", got)
	}
	reads := metricValue(t, hs.URL, "framecast_gateway_stream_reads_total")

	for i := range frames {
		m, err := tryRead(slow)
		if err != nil {
			t.Fatalf("slow client after %d frames: %v", i, err)
		}
		if m.text {
			t.Fatalf("slow client frame %d: got control %s", i, m.raw)
		}
		if m.hdr.Seq != want[i] {
			t.Fatalf("slow client frame %d: got seq %d; want %d", i, m.hdr.Seq, want[i])
		}
		if i%20 == 0 {
			time.Sleep(time.Millisecond) // reads slowly
		}
	}
	// The ring could not hold what the slow client had not read: it came
	// from shared stream reads, chunk by chunk.
	if got := metricValue(t, hs.URL, "framecast_gateway_stream_reads_total"); got <= reads {
		t.Errorf("stream reads while the slow client caught up: got %v; want more than %v", got, reads)
	}
	// Back to live after catch-up.
	next := p.publish("o", "", img(1))
	checkSeqs(t, readFrames(t, slow, 1), []uint64{next})
	checkSeqs(t, readFrames(t, fast, 1), []uint64{next})
	_ = srv
}

func TestHealthReadyMetrics(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code := getJSON(t, hs.URL+path, nil); code != 200 {
			t.Errorf("GET %s: got %d; want 200", path, code)
		}
	}
	c := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
	readControl(t, c, wire.TypeHello)
	if got := metricValue(t, hs.URL, `framecast_gateway_connections{endpoint="native"}`); got != 1 {
		t.Errorf("connections gauge: got %v; want 1", got)
	}
	if got := metricValue(t, hs.URL, "framecast_gateway_subscriptions"); got != 2 {
		t.Errorf("subscriptions gauge: got %v; want 2 (the output's and the events')", got)
	}
}

func TestReadyWithoutNATS(t *testing.T) {
	// Nothing listens on this port: the gateway starts and is not ready.
	srv, err := New(context.Background(), Config{NATSURL: "nats://127.0.0.1:1", AllowAnonymous: true, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("new without nats: %v", err)
	}
	defer srv.Close()
	hs := newHTTPTest(t, srv)
	var body errorBody
	if code := getJSON(t, hs.URL+"/readyz", &body); code != 503 || body.Error.Message == "" {
		t.Fatalf("readyz without nats: got %d %+v; want 503 with a message", code, body)
	}
	_ = fmt.Sprint()
}
