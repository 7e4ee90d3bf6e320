package gateway

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// TestPing: an idle connection gets keepalive pings, which the client
// answers; one that does not answer is closed.
func TestPing(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, func(c *Config) {
		c.PingInterval = 20 * time.Millisecond
		c.WriteTimeout = 500 * time.Millisecond
	})

	t.Run("answered", func(t *testing.T) {
		var pings atomic.Int64
		c := dial(t, hs.URL, "/v1/ws?output_id=o", &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
		})
		readControl(t, c, wire.TypeHello)
		// Reading makes the client library answer pings.
		ctx, cancel := context.WithCancel(context.Background())
		read := make(chan error, 1)
		go func() { _, _, err := c.Read(ctx); read <- err }()
		for i := 0; pings.Load() < 3 || metricValue(t, hs.URL, "framecast_gateway_pings_total") < 3; i++ {
			if i > 3000 {
				t.Fatalf("after a while: got %d pings, %v answered; want 3", pings.Load(), metricValue(t, hs.URL, "framecast_gateway_pings_total"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if n := srv.Connections(); n != 1 {
			t.Fatalf("connections: got %d; want 1 (still open)", n)
		}
		cancel()
		<-read
	})

	t.Run("unanswered", func(t *testing.T) {
		// This client never reads, so it never answers a ping.
		c := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
		for i := 0; srv.Connections() != 0; i++ {
			if i > 3000 {
				t.Fatalf("connections: got %d; want 0 (closed for not answering pings)", srv.Connections())
			}
			time.Sleep(5 * time.Millisecond)
		}
		readControl(t, c, wire.TypeHello) // sent before the connection was cut
		if _, err := tryRead(c); err == nil {
			t.Fatal("read after the cut: got a message; want an error")
		}
	})
}

// TestIdleSessionGoroutines: an idle connection holds one goroutine, its
// reader; the writer exits once it has nothing to do and comes back for
// new frames.
func TestIdleSessionGoroutines(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	const n = 20
	cs := dialIdle(t, hs.URL, n)
	waitSessionGoroutines(t, n, 0)
	seq := p.publish("idle", "", img(1))
	for _, c := range cs {
		checkSeqs(t, readFrames(t, c, 1), []uint64{seq})
	}
	waitSessionGoroutines(t, n, 0)
}

// TestWritersExitWhenIdle: the goroutines that ran writers are reused,
// wait for more work for writerIdle, then exit; Close ends the ones still
// waiting.
func TestWritersExitWhenIdle(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	const n = 20
	cs := dialIdle(t, hs.URL, n)
	for range 3 {
		seq := p.publish("idle", "", img(1))
		for _, c := range cs {
			checkSeqs(t, readFrames(t, c, 1), []uint64{seq})
		}
	}
	// Three frames to each of n connections: the goroutines were reused,
	// not started per run (they wait writerIdle, so a slow machine may
	// already have seen some go).
	if got := poolGoroutines(); got > n {
		t.Fatalf("%d writer goroutines right after the frames; want at most %d", got, n)
	}
	deadline := time.Now().Add(writerIdle + 5*time.Second)
	for poolGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d writer goroutines %v after the last frame; want 0", poolGoroutines(), writerIdle+5*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.publish("idle", "", img(2))
	for _, c := range cs {
		readFrames(t, c, 1)
	}
	_ = srv.Close()
	if got := poolGoroutines(); got != 0 {
		t.Fatalf("%d writer goroutines after Close; want 0", got)
	}
}

// dialIdle opens n connections to output idle and reads their hellos.
func dialIdle(t *testing.T, base string, n int) []*websocket.Conn {
	t.Helper()
	cs := make([]*websocket.Conn, n)
	for i := range cs {
		cs[i] = dial(t, base, "/v1/ws?output_id=idle", nil)
		readControl(t, cs[i], wire.TypeHello)
	}
	return cs
}

func poolGoroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "gateway.(*writerPool).serve(")
}

// waitSessionGoroutines waits until the sessions' reader and writer
// goroutines number readers and writers.
func waitSessionGoroutines(t *testing.T, readers, writers int) {
	t.Helper()
	var r, w int
	for i := 0; ; i++ {
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		r, w = 0, 0
		for _, g := range strings.Split(string(buf), "\n\n") {
			switch {
			case strings.Contains(g, "gateway.(*session).read("):
				r++
			case strings.Contains(g, "gateway.(*session).writeLoop("):
				w++
			}
		}
		if r == readers && w == writers {
			return
		}
		if i > 1000 {
			t.Fatalf("session goroutines: got %d readers, %d writers; want %d, %d", r, w, readers, writers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
