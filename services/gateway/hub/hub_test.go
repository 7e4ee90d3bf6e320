package hub

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/subject"
)

// env is a hub on an embedded NATS server, counting its stream reads and
// JetStream API requests.
type env struct {
	t        *testing.T
	js       jetstream.JetStream
	h        *Hub
	reads    atomic.Int64
	requests atomic.Int64
	slow     chan struct{} // receives when NATS reports a slow consumer
	drops    atomic.Int64  // slow consumers reported
}

func newEnv(t *testing.T, buffer int) *env {
	t.Helper()
	js := natstest.Start(t)
	if _, err := stream.Ensure(context.Background(), js, stream.Config{Memory: true}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, js: js, slow: make(chan struct{}, 16)}
	var h atomic.Pointer[Hub]
	nc, err := nats.Connect(js.Conn().ConnectedUrl(), nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) && h.Load() != nil {
			e.drops.Add(1)
			select {
			case e.slow <- struct{}{}:
			default:
			}
			h.Load().SlowConsumer(sub)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	trace := &jetstream.ClientTrace{RequestSent: func(string, []byte) { e.requests.Add(1) }}
	gjs, err := jetstream.New(nc, jetstream.WithClientTrace(trace))
	if err != nil {
		t.Fatal(err)
	}
	e.h = New(Config{Conn: nc, Buffer: buffer, Source: replay.Source{JS: gjs, Stream: stream.DefaultName},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Stats: Stats{Read: func(int) { e.reads.Add(1) }}})
	h.Store(e.h)
	t.Cleanup(e.h.Close)
	if _, err := e.h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) publish(oid, cid string) uint64 {
	e.t.Helper()
	return e.publishMeta(frame.Meta{OutputID: oid, ClientID: cid, Format: frame.PNG, Width: 1, Height: 1, BatchSize: 1})
}

// publishMeta stores a frame with metadata m and returns its sequence.
func (e *env) publishMeta(m frame.Meta) uint64 {
	e.t.Helper()
	msg := nats.NewMsg(m.Subject())
	m.Header(msg.Header)
	msg.Data = []byte("image")
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

func watch(oid, cid string) Watch {
	return Watch{Live: "live.outputs." + subject.Escape(oid) + ".*", Filter: "outputs." + subject.Escape(oid) + ".*", Client: subject.ClientToken(cid)}
}

// waker is a Waker on a channel.
type waker chan struct{}

func (w waker) Wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// drain takes n entries from c, as a connection's writer does.
func drain(t *testing.T, c *Cursor, w waker, n int) []uint64 {
	t.Helper()
	var got []uint64
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		x := c.Next()
		if x.Kind == Wait {
			c.Park()
			if x = c.Next(); x.Kind == Wait {
				select {
				case <-w:
				case <-deadline:
					t.Fatalf("after %d entries (%v): got nothing more; want %d", len(got), got, n)
				}
				continue
			}
			c.Unpark()
		}
		switch x.Kind {
		case Send:
			got = append(got, x.Frame.Seq)
		default:
			t.Fatalf("after %v: got %v; want frames", got, x.Kind)
		}
	}
	return got
}

func join(t *testing.T, h *Hub, w waker, since *uint64, ws ...Watch) *Cursor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.Join(ctx, w, ws, since)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Leave(c) })
	return c
}

func checkOrder(t *testing.T, got, want []uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames %v; want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frame %d: got seq %d; want %d (got %v)", i, got[i], want[i], got)
		}
	}
}

// TestResumeStormOneRead: many connections resuming from 0 at once on one
// output, each as its own client, are served by one stream read.
func TestResumeStormOneRead(t *testing.T) {
	e := newEnv(t, 0)
	var want []uint64
	for range 20 {
		want = append(want, e.publish("o", ""))
	}
	before := e.requests.Load()
	const clients = 200
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := make(waker, 1)
			var zero uint64
			c := join(t, e.h, w, &zero, watch("o", string(rune('a'+i%26))+"x"))
			checkOrder(t, drain(t, c, w, len(want)), want)
		}()
	}
	wg.Wait()
	if n := e.reads.Load(); n != 1 {
		t.Errorf("stream reads: got %d; want 1", n)
	}
	// One read: its consumer's creation and deletion.
	if n := e.requests.Load() - before; n > 2 {
		t.Errorf("JetStream API requests: got %d; want at most 2", n)
	}
}

// TestLiveOnlyJoinsCostNothing: live-only connections to an output the
// gateway already follows make no JetStream request and get only frames
// stored after they joined.
func TestLiveOnlyJoinsCostNothing(t *testing.T) {
	e := newEnv(t, 0)
	e.publish("o", "")
	first := join(t, e.h, make(waker, 1), nil, watch("o", ""))
	_ = first
	before := e.requests.Load()
	ws := make([]waker, 100)
	cs := make([]*Cursor, 100)
	for i := range cs {
		ws[i] = make(waker, 1)
		cs[i] = join(t, e.h, ws[i], nil, watch("o", "c"))
	}
	if n := e.requests.Load() - before; n != 0 {
		t.Errorf("JetStream API requests for 100 live-only joins: got %d; want 0", n)
	}
	seq := e.publish("o", "")
	for i, c := range cs {
		checkOrder(t, drain(t, c, ws[i], 1), []uint64{seq})
	}
	if n := e.reads.Load(); n != 0 {
		t.Errorf("stream reads: got %d; want 0", n)
	}
}

// TestSlowConsumerOneRead: NATS drops live frames of one subscription
// (the dispatcher is held while frames flood in); that ring heals with
// exactly one stream read and its cursor gets every frame, in order.
func TestSlowConsumerOneRead(t *testing.T) {
	e := newEnv(t, 4)
	w := make(waker, 1)
	c := join(t, e.h, w, nil, watch("o", ""))
	other := make(waker, 1)
	oc := join(t, e.h, other, nil, watch("p", ""))
	r := c.subs[0].r

	r.mu.Lock() // the dispatcher blocks on its next frame of o
	var want []uint64
	for range 50 {
		want = append(want, e.publish("o", ""))
	}
	select {
	case <-e.slow:
	case <-time.After(10 * time.Second):
		r.mu.Unlock()
		t.Fatal("no slow consumer reported")
	}
	r.mu.Unlock()
	checkOrder(t, drain(t, c, w, len(want)), want)
	// Frames still arriving after the release may overflow the channel
	// again: each drop NATS reports is healed by one read at most (a drop
	// reported before the read for an earlier one began is healed by it).
	drops, reads := e.drops.Load(), e.reads.Load()
	if reads < 1 || reads > drops {
		t.Errorf("stream reads: got %d; want 1..%d, at most one per slow consumer reported", reads, drops)
	}
	// The other output's ring was not touched.
	seq := e.publish("p", "")
	checkOrder(t, drain(t, oc, other, 1), []uint64{seq})
	if n := e.reads.Load(); n != reads {
		t.Errorf("stream reads after the other output's frame: got %d; want %d", n, reads)
	}
}

// TestStreamRecreated: a stream deleted and created again under a cursor
// resets it to the new stream's start, and it gets the new frames.
func TestStreamRecreated(t *testing.T) {
	e := newEnv(t, 0)
	w := make(waker, 1)
	c := join(t, e.h, w, nil, watch("o", ""))
	want := []uint64{e.publish("o", ""), e.publish("o", "")}
	checkOrder(t, drain(t, c, w, 2), want)

	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, stream.DefaultName); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(ctx, e.js, stream.Config{Memory: true}); err != nil {
		t.Fatal(err)
	}
	want = []uint64{e.publish("o", ""), e.publish("o", "")}
	if want[0] != 1 {
		t.Fatalf("new stream's first seq: got %d; want 1", want[0])
	}
	deadline := time.After(10 * time.Second)
	for {
		x := c.Next()
		if x.Kind == Reset {
			break
		}
		if x.Kind != Wait {
			t.Fatalf("got %v (frame %v); want a reset", x.Kind, x.Frame)
		}
		c.Park()
		if x = c.Next(); x.Kind == Reset {
			break
		}
		select {
		case <-w:
		case <-time.After(100 * time.Millisecond):
			e.h.checkEpoch() // as the periodic lookup would
		case <-deadline:
			t.Fatal("no reset")
		}
	}
	checkOrder(t, drain(t, c, w, 2), want)
}

// TestFanoutAllocs: taking the next frame and its wire bytes allocates
// nothing per connection once the bytes are built.
func TestFanoutAllocs(t *testing.T) {
	e := newEnv(t, 0)
	var zero uint64
	var want []uint64
	for range 300 {
		want = append(want, e.publish("o", ""))
	}
	wa, wb := make(waker, 1), make(waker, 1)
	a := join(t, e.h, wa, &zero, watch("o", ""))
	for _, seq := range drain(t, a, wa, len(want)) {
		_ = seq
	}
	r := a.subs[0].r
	r.mu.RLock()
	for _, f := range r.frames {
		f.Native() // built once, by the first connection
	}
	r.mu.RUnlock()
	b := join(t, e.h, wb, &zero, watch("o", ""))
	allocs := testing.AllocsPerRun(200, func() {
		x := b.Next()
		if x.Kind != Send || len(x.Frame.Native()) == 0 {
			t.Fatalf("got %v; want a frame", x.Kind)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per frame: got %v; want 0", allocs)
	}
}

// countWaker is a waker that counts its wakes.
type countWaker struct {
	ch waker
	n  atomic.Int64
}

func (w *countWaker) Wake() {
	w.n.Add(1)
	w.ch.Wake()
}

// TestOthersFramesDoNotWake: a parked cursor is moved past the frames of
// other clients of its ring without being woken, and is woken for its own.
func TestOthersFramesDoNotWake(t *testing.T) {
	e := newEnv(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a := &countWaker{ch: make(waker, 1)}
	ca, err := e.h.Join(ctx, a, []Watch{watch("o", "a")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.h.Leave(ca)
	wb := make(waker, 1)
	cb := join(t, e.h, wb, nil, watch("o", "b"))
	if x := ca.Next(); x.Kind != Wait {
		t.Fatalf("got %v; want wait", x.Kind)
	}
	ca.Park()
	if x := ca.Next(); x.Kind != Wait {
		t.Fatalf("got %v; want wait", x.Kind)
	}
	var others []uint64
	for range 50 {
		others = append(others, e.publish("o", "b"))
	}
	checkOrder(t, drain(t, cb, wb, len(others)), others)
	// The dispatcher moves the parked cursor as it hands out each frame.
	last := others[len(others)-1]
	for deadline := time.Now().Add(10 * time.Second); ca.Position() != last; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("position: got %d; want %d, past the other client's frames", ca.Position(), last)
		}
	}
	if n := a.n.Load(); n != 0 {
		t.Errorf("wakes for 50 frames of another client: got %d; want 0", n)
	}
	own := e.publish("o", "a")
	checkOrder(t, drain(t, ca, a.ch, 1), []uint64{own})
	if n := a.n.Load(); n != 1 {
		t.Errorf("wakes for its own frame: got %d; want 1", n)
	}
}

// TestManyClientsOneRing: cursors of several clients on one ring, parked
// and woken while frames of every client arrive, each get exactly their
// client's frames and the broadcasts, in order.
func TestManyClientsOneRing(t *testing.T) {
	e := newEnv(t, 0)
	clients := []string{"a", "b", "c"}
	type member struct {
		cid string
		w   waker
		c   *Cursor
	}
	var ms []member
	for i := range 12 {
		cid := clients[i%len(clients)]
		w := make(waker, 1)
		ms = append(ms, member{cid, w, join(t, e.h, w, nil, watch("o", cid))})
	}
	// Which client each frame is for, fixed before the cursors start
	// draining while the frames are published.
	const frames = 300
	want := map[string][]uint64{}
	cids := make([]string, frames)
	for i := range cids {
		cids[i] = clients[i%len(clients)]
		if i%7 == 0 {
			cids[i] = "" // a broadcast: every client takes it
		}
		for _, c := range clients {
			if cids[i] == "" || cids[i] == c {
				want[c] = append(want[c], uint64(i+1)) // a new stream: seqs from 1
			}
		}
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkOrder(t, drain(t, m.c, m.w, len(want[m.cid])), want[m.cid])
		}()
	}
	for i, cid := range cids {
		if seq := e.publish("o", cid); seq != uint64(i+1) {
			t.Fatalf("frame %d stored at seq %d; want %d", i, seq, i+1)
		}
	}
	wg.Wait()
}
