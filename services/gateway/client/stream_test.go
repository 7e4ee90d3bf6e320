package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// collector records what a Stream hands to its Handler and cancels the Run
// once stop reports true.
type collector struct {
	mu     sync.Mutex
	got    []string
	cancel context.CancelFunc
	stop   func(Message) bool
}

func (c *collector) handle(ctx context.Context, m Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m := m.(type) {
	case *Frame:
		c.got = append(c.got, fmt.Sprintf("frame %d %s", m.Seq, m.Image))
	case *Control:
		switch m.Type {
		case wire.TypeReset:
			c.got = append(c.got, fmt.Sprintf("reset %s %d %s", m.Epoch, *m.Since, m.Message))
			return c.done(m)
		case wire.TypeEvent:
			c.got = append(c.got, describe(m))
			return c.done(m)
		}
		c.got = append(c.got, fmt.Sprintf("%s %d..%d %s", m.Type, m.From, m.To, m.SID))
	}
	return c.done(m)
}

// done cancels the Run once m is the last message wanted.
func (c *collector) done(m Message) error {
	if c.stop(m) {
		c.cancel()
	}
	return nil
}

func (c *collector) run(t *testing.T, cfg StreamConfig, stop func(Message) bool) (*Stream, []string) {
	t.Helper()
	if cfg.MaxBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	s, err := NewStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The timeout only bounds how long a stream that never reaches its stop
	// takes to fail.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c.cancel, c.stop = cancel, stop
	if err := s.Run(ctx, c.handle); !errors.Is(err, context.Canceled) {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("Run: got %v; want context.Canceled (handled %q)", err, c.got)
	}
	return s, c.got
}

func seqIs(n uint64) func(Message) bool {
	return func(m Message) bool {
		f, ok := m.(*Frame)
		return ok && f.Seq == n
	}
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestStreamResumesAndDeduplicates(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		switch n {
		case 0:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(0)})
			sendFrame(t, ws, 1)
			sendFrame(t, ws, 2)
			sendFrame(t, ws, 3)
			ws.Close(wire.CloseGoingAway, "draining")
		case 1:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(3)})
			sendFrame(t, ws, 2) // a resend: dropped
			sendFrame(t, ws, 3)
			sendFrame(t, ws, 4)
			sendFrame(t, ws, 4)
			sendFrame(t, ws, 5)
		}
	})
	var disconnects []int
	cfg := StreamConfig{Config: Config{URL: g.URL, OutputID: "demo", Last: 10}}
	cfg.OnDisconnect = func(url string, err error, wait time.Duration) {
		disconnects = append(disconnects, int(websocket.CloseStatus(err)))
	}
	s, got := (&collector{}).run(t, cfg, seqIs(5))
	equal(t, got, []string{
		"hello 0..0 ", "frame 1 img-1", "frame 2 img-2", "frame 3 img-3",
		"hello 0..0 ", "frame 4 img-4", "frame 5 img-5",
	})
	equal(t, []string{fmt.Sprint(disconnects)}, []string{"[1001]"})
	if q := g.request(t, 0).URL.RawQuery; q != "last=10&output_id=demo" {
		t.Errorf("first query got %q; want last=10&output_id=demo", q)
	}
	if q := g.request(t, 1).URL.RawQuery; q != "output_id=demo&since=3" {
		t.Errorf("reconnect query got %q; want output_id=demo&since=3", q)
	}
	if seq, epoch, ok := s.Resume(); seq != 5 || epoch != "" || !ok {
		t.Errorf("Resume got %d, %q, %v; want 5, no epoch, true", seq, epoch, ok)
	}
}

func TestStreamGapAdvancesResume(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		switch n {
		case 0:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(2)})
			sendControl(t, ws, wire.Control{Type: wire.TypeGap, From: 3, To: 10})
			sendFrame(t, ws, 9) // inside the reported gap: dropped
			ws.Close(wire.CloseSlowClient, "too slow")
		case 1:
			sendFrame(t, ws, 11)
		}
	})
	_, got := (&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, OutputID: "demo", Since: u64(2)}}, seqIs(11))
	equal(t, got, []string{"hello 0..0 ", "gap 3..10 ", "frame 11 img-11"})
	if q := g.request(t, 0).URL.RawQuery; q != "output_id=demo&since=2" {
		t.Errorf("first query got %q; want output_id=demo&since=2", q)
	}
	if q := g.request(t, 1).URL.RawQuery; q != "output_id=demo&since=10" {
		t.Errorf("reconnect query got %q; want output_id=demo&since=10", q)
	}
}

func TestStreamFailsOver(t *testing.T) {
	down := downURL(t)
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		switch n {
		case 0:
			sendFrame(t, ws, 7)
			ws.Close(wire.CloseGoingAway, "draining")
		case 1:
			sendFrame(t, ws, 8)
		}
	})
	var tried []string
	cfg := StreamConfig{Config: Config{OutputID: "demo"}, URLs: []string{down, g.URL}}
	cfg.OnDisconnect = func(url string, err error, wait time.Duration) { tried = append(tried, url) }
	_, got := (&collector{}).run(t, cfg, seqIs(8))
	equal(t, got, []string{"frame 7 img-7", "frame 8 img-8"})
	equal(t, tried, []string{down, g.URL, down})
	if q := g.request(t, 1).URL.RawQuery; q != "output_id=demo&since=7" {
		t.Errorf("failover query got %q; want output_id=demo&since=7", q)
	}
}

func TestStreamComfyDeployKeepsAssignedID(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		send(t, ws, websocket.MessageText, wire.Status("gen-"+itoa(uint64(n))))
		sendComfy(t, ws, "demo", "a")
		if n == 0 {
			ws.Close(wire.CloseGoingAway, "draining")
		}
	})
	stop := func(m Message) bool { c, ok := m.(*Control); return ok && c.SID == "gen-1" }
	s, got := (&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, ComfyDeploy: true}}, stop)
	equal(t, got, []string{"status 0..0 gen-0", "frame 0 a", "status 0..0 gen-1"})
	if q := g.request(t, 0).URL.RawQuery; q != "" {
		t.Errorf("first query got %q; want none", q)
	}
	if q := g.request(t, 1).URL.RawQuery; q != "clientId=gen-0" {
		t.Errorf("reconnect query got %q; want clientId=gen-0", q)
	}
	if _, _, ok := s.Resume(); ok {
		t.Error("Resume reported a sequence on the comfydeploy endpoint")
	}
}

func TestStreamHandlerErrorStops(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) { sendFrame(t, ws, 1) })
	s, err := NewStream(StreamConfig{Config: Config{URL: g.URL, OutputID: "demo"}})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := s.Run(t.Context(), func(context.Context, Message) error { return boom }); err != boom {
		t.Fatalf("got %v; want the handler's error", err)
	}
}

func TestStreamCancelLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("connected", func(t *testing.T) {
		g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
			sendControl(t, ws, wire.Control{Type: wire.TypeHello})
		})
		(&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, OutputID: "demo"}},
			func(Message) bool { return true })
		g.Close()
	})
	t.Run("in backoff", func(t *testing.T) {
		s, err := NewStream(StreamConfig{
			Config:     Config{URL: downURL(t), OutputID: "demo"},
			MinBackoff: time.Hour, MaxBackoff: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		s.cfg.OnDisconnect = func(string, error, time.Duration) { cancel() }
		if err := s.Run(ctx, func(context.Context, Message) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v; want context.Canceled", err)
		}
	})
	checkGoroutines(t, before)
}

func TestBackoffBounded(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi time.Duration
	}{
		{"defaults", DefaultMinBackoff, DefaultMaxBackoff},
		{"equal", time.Second, time.Second},
		{"huge", time.Duration(1) << 40, time.Duration(1<<63 - 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for n := 0; n < 100; n++ {
				ceil := tt.hi
				if n < 40 && tt.lo<<n > 0 && tt.lo<<n < tt.hi {
					ceil = tt.lo << n
				}
				for i := 0; i < 50; i++ {
					if d := backoff(tt.lo, tt.hi, n); d < 0 || d > ceil {
						t.Fatalf("attempt %d: got %v; want 0..%v", n, d, ceil)
					}
				}
			}
		})
	}
}

func TestNewStreamRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  StreamConfig
		want string
	}{
		{"no url", StreamConfig{Config: Config{OutputID: "o"}}, "no gateway url"},
		{"bad second url", StreamConfig{Config: Config{OutputID: "o"}, URLs: []string{"http://a", "tcp://b"}}, "allowed: http, https, ws, wss"},
		{"max below min", StreamConfig{Config: Config{URL: "http://a", OutputID: "o"}, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "want 0 < min <= max"},
		{"negative min", StreamConfig{Config: Config{URL: "http://a", OutputID: "o"}, MinBackoff: -1}, "want 0 < min <= max"},
		{"bad output", StreamConfig{Config: Config{URL: "http://a"}}, "output_id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStream(tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v; want ErrInvalidConfig", err)
			}
			contains(t, err, tt.want)
		})
	}
}

// downURL is the URL of a port nothing listens on.
func downURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// eventSeqIs stops a collector at the event of sequence n.
func eventSeqIs(n uint64) func(Message) bool {
	return func(m Message) bool {
		c, ok := m.(*Control)
		return ok && c.Type == wire.TypeEvent && c.Seq != nil && *c.Seq == n
	}
}

// TestStreamEventsResumeAndDeduplicate: an event's sequence moves the
// resume point like a frame's, and an event at or below it (a replay
// overlapping what was handed on) is dropped like a frame.
func TestStreamEventsResumeAndDeduplicate(t *testing.T) {
	event := func(seq uint64, name string) wire.Control {
		return wire.Control{Type: wire.TypeEvent, Seq: u64(seq), Event: name, Data: []byte(`{"prompt_id":"p"}`)}
	}
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		switch n {
		case 0:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(0), Epoch: "e1"})
			sendFrame(t, ws, 1)
			sendControl(t, ws, event(2, "execution_start"))
			ws.Close(wire.CloseGoingAway, "draining")
		case 1:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(2), Epoch: "e1"})
			sendControl(t, ws, event(2, "execution_start")) // a resend: dropped
			sendFrame(t, ws, 2)                             // at the resume point: dropped
			sendFrame(t, ws, 3)
			sendControl(t, ws, event(3, "progress")) // a sequence seen: dropped
			sendControl(t, ws, event(4, "execution_success"))
		}
	})
	s, got := (&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, OutputID: "demo", Since: u64(0), Epoch: "e1"}}, eventSeqIs(4))
	equal(t, got, []string{
		"hello 0..0 ", "frame 1 img-1", `event 2 execution_start {"prompt_id":"p"}`,
		"hello 0..0 ", "frame 3 img-3", `event 4 execution_success {"prompt_id":"p"}`,
	})
	query(t, g, 1, "epoch=e1&output_id=demo&since=2")
	resumeIs(t, s, 4, "e1")
}

// TestStreamComfyDeployEvents: on the ComfyDeploy endpoint events have no
// sequence; every one is handed on, and a reconnect does not resume.
func TestStreamComfyDeployEvents(t *testing.T) {
	progress := `{"event":"progress","data":{"value":1,"max":4}}`
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		send(t, ws, websocket.MessageText, wire.Status("gen-0"))
		send(t, ws, websocket.MessageText, []byte(progress))
		send(t, ws, websocket.MessageText, []byte(progress))
		if n == 0 {
			ws.Close(wire.CloseGoingAway, "draining")
		}
	})
	var events int
	stop := func(m Message) bool {
		if c, ok := m.(*Control); ok && c.Type == wire.TypeEvent {
			events++
		}
		return events == 4
	}
	s, got := (&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, ComfyDeploy: true}}, stop)
	ev := `event - progress {"value":1,"max":4}`
	equal(t, got, []string{"status 0..0 gen-0", ev, ev, "status 0..0 gen-0", ev, ev})
	query(t, g, 1, "clientId=gen-0")
	if _, _, ok := s.Resume(); ok {
		t.Error("Resume reported a sequence on the comfydeploy endpoint")
	}
}

// TestStreamLateFrame: a frame the gateway sends late (below the resume
// point, never handed on) is handed on once; repeats, frames at or below
// where the Stream started and frames inside a reported gap are not.
func TestStreamLateFrame(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		switch n {
		case 0:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(2)})
			sendFrame(t, ws, 3)
			sendFrame(t, ws, 5)
			sendFrame(t, ws, 4) // late: handed on
			sendFrame(t, ws, 4) // a repeat: dropped
			sendFrame(t, ws, 3) // a repeat: dropped
			sendFrame(t, ws, 2) // where the Stream started: dropped
			sendControl(t, ws, wire.Control{Type: wire.TypeGap, From: 6, To: 8})
			sendFrame(t, ws, 7) // inside the gap: dropped
			ws.Close(wire.CloseGoingAway, "drain")
		case 1:
			sendFrame(t, ws, 9)
		}
	})
	s, got := (&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, OutputID: "demo", Since: u64(2)}}, seqIs(9))
	equal(t, got, []string{"hello 0..0 ", "frame 3 img-3", "frame 5 img-5", "frame 4 img-4", "gap 6..8 ", "frame 9 img-9"})
	if q := g.request(t, 1).URL.RawQuery; q != "output_id=demo&since=8" {
		t.Errorf("reconnect query got %q; want output_id=demo&since=8 (a late frame does not move the resume point back)", q)
	}
	if seq, _, _ := s.Resume(); seq != 9 {
		t.Errorf("Resume got %d; want 9", seq)
	}
}

// TestStreamDedupWindow: a late sequence is told from a repeat within the
// last DedupWindow sequences handed on; below those it is not handed on.
func TestStreamDedupWindow(t *testing.T) {
	s, err := NewStream(StreamConfig{Config: Config{URL: "http://h", OutputID: "o"}})
	if err != nil {
		t.Fatal(err)
	}
	s.advance(0) // the first hello
	for seq := uint64(2); seq <= 2*(DedupWindow+100); seq += 2 {
		if !s.take(seq) {
			t.Fatalf("seq %d: not taken; want taken", seq)
		}
	}
	top := uint64(2 * (DedupWindow + 100))
	for _, tt := range []struct {
		seq  uint64
		want bool
	}{
		{top - 1, true},  // late, within the window
		{top - 1, false}, // a repeat of it
		{top - 2, false}, // a repeat within the window
		{101, false},     // below the window: not known, not handed on
		{top + 1, true},
	} {
		if got := s.take(tt.seq); got != tt.want {
			t.Errorf("take(%d): got %v; want %v", tt.seq, got, tt.want)
		}
	}
	if len(s.seen) != DedupWindow || len(s.seenSet) != DedupWindow {
		t.Errorf("remembered %d (%d in the set); want %d", len(s.seen), len(s.seenSet), DedupWindow)
	}
}
