package integration_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/wire"
)

// TestWindowExpired: a client returns after the frames it missed left the
// stream's window. It gets a gap message naming exactly those sequences,
// then the live marker, then live frames; nothing is skipped silently.
func TestWindowExpired(t *testing.T) {
	const oid = "window"
	s := newStack(t, stackOptions{stream: []string{"--stream-max-age=2s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := ledger.New(scenarioName(t))
	rec := l.Client("returning", func(f ledger.Frame) bool { return f.OutputID == oid })
	pub := newPublisher(s.producer.URL, l)

	// First visit: live from now, sees 5 frames.
	c := dial(t, ctx, client.Config{URL: s.gateways[0].URL, OutputID: oid})
	expectControl(t, ctx, c, wire.TypeHello)
	var last uint64
	for range 5 {
		f, err := pub.publish(ctx, oid, "", true)
		if err != nil {
			t.Fatal(err)
		}
		got := readFrame(t, ctx, c)
		rec.Saw(got)
		if got.ID != f.ID {
			t.Fatalf("live frame: got id %d; want %d", got.ID, f.ID)
		}
		last = got.Seq
	}
	c.Close()

	// Away: 10 frames are published and expire.
	var missed []ledger.Frame
	for range 10 {
		f, err := pub.publish(ctx, oid, "", true)
		if err != nil {
			t.Fatal(err)
		}
		missed = append(missed, f)
	}
	waitExpired(t, ctx, s, missed[len(missed)-1].Seq)

	// Return with since=last: gap for exactly the missed frames, live
	// marker, then live frames.
	c = dial(t, ctx, client.Config{URL: s.gateways[0].URL, OutputID: oid, Since: u64(last)})
	defer c.Close()
	if h := expectControl(t, ctx, c, wire.TypeHello); h.Since == nil || *h.Since != last {
		t.Errorf("hello since: got %v; want %d", h.Since, last)
	}
	g := expectControl(t, ctx, c, wire.TypeGap)
	rec.Gap(g.From, g.To)
	if from, to := missed[0].Seq, missed[len(missed)-1].Seq; g.From != from || g.To != to {
		t.Errorf("gap: got %d..%d; want %d..%d", g.From, g.To, from, to)
	}
	expectControl(t, ctx, c, wire.TypeLive)
	for range 5 {
		f, err := pub.publish(ctx, oid, "", true)
		if err != nil {
			t.Fatal(err)
		}
		got := readFrame(t, ctx, c)
		rec.Saw(got)
		if got.ID != f.ID {
			t.Fatalf("live frame after gap: got id %d; want %d", got.ID, f.ID)
		}
	}
	r := finish(t, ctx, l)
	if r.Gapped != len(missed) {
		t.Errorf("frames reported as gap: got %d; want %d", r.Gapped, len(missed))
	}
}

// waitExpired waits until the stream's first sequence is past seq.
func waitExpired(t testing.TB, ctx context.Context, s *stack, seq uint64) {
	t.Helper()
	js, err := jetstream.New(s.nats.Connect())
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := js.Stream(ctx, stream.DefaultName)
		if err == nil && st.CachedInfo().State.FirstSeq > seq {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("frames up to %d did not expire: %v", seq, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dial opens one native connection.
func dial(t testing.TB, ctx context.Context, cfg client.Config) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// next reads the next message with a deadline.
func next(ctx context.Context, c *client.Conn) (client.Message, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Next(rctx)
}

// expectControl reads one message and fails unless it is a control of
// type typ.
func expectControl(t testing.TB, ctx context.Context, c *client.Conn, typ string) *client.Control {
	t.Helper()
	m, err := next(ctx, c)
	if err != nil {
		t.Fatalf("want %s: %v", typ, err)
	}
	ctl, ok := m.(*client.Control)
	if !ok || ctl.Type != typ {
		t.Fatalf("message: got %s; want control %q", describe(m), typ)
	}
	return ctl
}

// readFrame reads one message and fails unless it is a frame carrying an
// id.
func readFrame(t testing.TB, ctx context.Context, c *client.Conn) ledger.Frame {
	t.Helper()
	m, err := next(ctx, c)
	if err != nil {
		t.Fatalf("want a frame: %v", err)
	}
	f, ok := m.(*client.Frame)
	if !ok {
		t.Fatalf("message: got %s; want a frame", describe(m))
	}
	id, err := ledger.ID(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	return ledger.Frame{ID: id, Seq: f.Seq, OutputID: f.Header.OutputID, ClientID: f.Header.ClientID}
}

func describe(m client.Message) string {
	switch m := m.(type) {
	case *client.Frame:
		return "frame seq " + strconv.FormatUint(m.Seq, 10)
	case *client.Control:
		return "control " + string(wire.EncodeControl(m.Control))
	}
	return "nil"
}
