package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/wire"
)

// TestStreamRecreated: the stream is deleted and created again under
// connected clients (with stream.Ensure and the services' config, as a
// producer or gateway starting on an empty cluster would). Each client is
// told with a reset that names the new epoch, then gets every frame of the
// new stream once, in order; the accounts are kept per epoch. A client
// that comes back later with a sequence and epoch of the old stream gets
// its hello, a reset, and the new stream's frames.
func TestStreamRecreated(t *testing.T) {
	const (
		oid     = "recreated"
		natives = 4
		before  = 10 // frames of the first stream
		after   = 20 // frames of the second: more, so sequences pass the old ones
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newStack(t, stackOptions{})
	gw := s.gateways[0]
	js, err := jetstream.New(s.nats.Connect())
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.Config{Replicas: len(s.nats.Nodes)}
	old := ensureEpoch(t, ctx, js, cfg)
	l := ledger.New(scenarioName(t))
	pub := newPublisher(s.producer.URL, l)
	pub.setEpoch(old)

	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i := range natives {
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("native%d", i), []string{gw.URL}, client.Config{OutputID: oid, Since: u64(0)}))
	}
	raw := watchRaw(t, wctx, l, "raw", gw.URL+"/v1/ws?output_id="+oid)
	waitHello(t, ctx, ws)
	select {
	case <-raw.hello:
	case err := <-raw.done:
		t.Fatalf("raw socket ended before its hello: %v", err)
	case <-ctx.Done():
		t.Fatalf("raw socket: no hello: %v", ctx.Err())
	}
	var last uint64
	for range before {
		f, err := pub.publish(ctx, oid, "", true)
		if err != nil {
			t.Fatal(err)
		}
		last = f.Seq
	}
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	if err := js.DeleteStream(ctx, stream.DefaultName); err != nil {
		t.Fatal(err)
	}
	epoch := ensureEpoch(t, ctx, js, cfg)
	t.Logf("stream %s created again: epoch %s -> %s", stream.DefaultName, old, epoch)
	pub.setEpoch(epoch)
	start := time.Now()
	for range after {
		if _, err := pub.publish(ctx, oid, "", true); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Wait(ctx); err != nil {
		t.Errorf("%v", err)
	}
	took := time.Since(start)
	t.Logf("every client had the new stream's frames %v after the first was published", took.Round(time.Millisecond))
	if took > 10*time.Second {
		// The first frames of a new stream make the gateway look its
		// stream up (at most once a second); its periodic lookup comes
		// every 30 s.
		t.Errorf("new stream's frames delivered after %v; want within 10 s", took.Round(time.Millisecond))
	}

	// Back with a position in the old stream: hello, reset, the new
	// stream's frames, live.
	back := l.Client("back", func(f ledger.Frame) bool { return f.OutputID == oid && f.Epoch == epoch })
	c := dial(t, ctx, client.Config{URL: gw.URL, OutputID: oid, Since: u64(last), Epoch: old})
	defer c.Close()
	if h := expectControl(t, ctx, c, wire.TypeHello); h.Epoch != epoch {
		t.Errorf("hello epoch: got %q; want %q", h.Epoch, epoch)
	}
	back.Hello(old)
	rs := expectControl(t, ctx, c, wire.TypeReset)
	if rs.Epoch != epoch || *rs.Since != 0 {
		t.Errorf("reset: got epoch %q since %d; want epoch %q since 0", rs.Epoch, *rs.Since, epoch)
	}
	back.Reset(rs.Epoch, *rs.Since)
	for range after {
		back.Saw(readFrame(t, ctx, c))
	}
	expectControl(t, ctx, c, wire.TypeLive)

	r := finish(t, ctx, l)
	stopWatchers(t, wcancel, ws)
	if err := <-raw.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("raw socket: %v", err)
	}
	if r.Gapped != 0 {
		t.Errorf("frames reported as gaps: got %d; want 0", r.Gapped)
	}
	for _, rec := range append([]*ledger.Client{raw.rec}, recs(ws)...) {
		if n, e := rec.Resets(), rec.Epoch(); n != 1 || e != epoch {
			t.Errorf("%s: resets %d, now in epoch %q; want 1 reset to epoch %q", rec.Name, n, e, epoch)
		}
	}
	logMetrics(t, ctx, gw.URL, "framecast_gateway_resets_total", "framecast_gateway_stream_reads_total",
		"framecast_gateway_jetstream_requests_total")
}

// ensureEpoch ensures the stream with cfg and returns its epoch: its
// creation time in nanoseconds, as the gateway names it.
func ensureEpoch(t testing.TB, ctx context.Context, js jetstream.JetStream, cfg stream.Config) string {
	t.Helper()
	st, err := stream.Ensure(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(st.CachedInfo().Created.UnixNano(), 10)
}

func recs(ws []*watcher) []*ledger.Client {
	rs := make([]*ledger.Client, len(ws))
	for i, w := range ws {
		rs[i] = w.rec
	}
	return rs
}

// rawWatcher reads one native socket with no client library: the
// controls and frames as the gateway wrote them go to its ledger client,
// with no resume and no de-duplication.
type rawWatcher struct {
	rec   *ledger.Client
	hello chan struct{} // closed at the hello
	done  chan error    // the read loop's end
}

// watchRaw opens a socket to the native endpoint u (http://host/v1/ws?...)
// and reads it until ctx ends or the connection fails. Its ledger client
// wants every frame of the output_id in u.
func watchRaw(t testing.TB, ctx context.Context, l *ledger.Ledger, name, u string) *rawWatcher {
	t.Helper()
	q, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	oid := q.Query().Get("output_id")
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(u, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	w := &rawWatcher{
		rec:   l.Client(name, func(f ledger.Frame) bool { return f.OutputID == oid }),
		hello: make(chan struct{}),
		done:  make(chan error, 1),
	}
	go func() {
		defer ws.CloseNow()
		w.done <- w.read(ctx, ws)
	}()
	return w
}

func (w *rawWatcher) read(ctx context.Context, ws *websocket.Conn) error {
	for {
		typ, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageBinary {
			h, img, err := wire.DecodeNative(b)
			if err != nil {
				return err
			}
			id, err := ledger.ID(img)
			if err != nil {
				return fmt.Errorf("frame %d: %w", h.Seq, err)
			}
			w.rec.Saw(ledger.Frame{ID: id, Seq: h.Seq, OutputID: h.OutputID, ClientID: h.ClientID})
			continue
		}
		c, err := wire.DecodeControl(b)
		if err != nil {
			return err
		}
		switch c.Type {
		case wire.TypeHello:
			w.rec.Hello(c.Epoch)
			close(w.hello)
		case wire.TypeGap:
			w.rec.Gap(c.From, c.To)
		case wire.TypeReset:
			if c.Since == nil {
				return fmt.Errorf("reset without since: %s", b)
			}
			w.rec.Reset(c.Epoch, *c.Since)
		}
	}
}
