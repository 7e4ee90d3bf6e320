package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/wire"
)

// checkContiguous checks that got is exactly want, in order.
func checkSeqs(t *testing.T, got []wire.Header, want []uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i] {
			t.Fatalf("frame %d: got seq %d; want %d", i, got[i].Seq, want[i])
		}
	}
}

func TestResume(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	c := dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c", nil)
	readControl(t, c, wire.TypeHello)
	first := p.publish("o", "c", img(0))
	readFrames(t, c, 1)
	_ = c.CloseNow()

	var want []uint64
	var tip uint64
	for i := range 50 {
		cid := "c"
		if i%3 == 0 {
			cid = "" // broadcasts count too
		}
		want = append(want, p.publish("o", cid, img(i)))
		tip = p.publish("o", "someone-else", img(i)) // never delivered
	}
	c = dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&client_id=c&since=%d", first), nil)
	h := readControl(t, c, wire.TypeHello)
	if h.Since == nil || *h.Since != first {
		t.Fatalf("hello since: got %v; want %d", h.Since, first)
	}
	checkSeqs(t, readFrames(t, c, 50), want)
	// The live marker names the last sequence the replay covered: the
	// last frame stored for the output, another client's.
	l := readControl(t, c, wire.TypeLive)
	if l.Seq == nil || *l.Seq != tip {
		t.Fatalf("live seq: got %v; want %d", l.Seq, tip)
	}
	next := p.publish("o", "c", img(99))
	checkSeqs(t, readFrames(t, c, 1), []uint64{next})
}

// TestResumeWhilePublishing reconnects with since while a publisher runs
// through the hand-over: the client's frames stay contiguous, without
// duplicates.
func TestResumeWhilePublishing(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	var mu sync.Mutex
	var published []uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var n atomic.Int64
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			seq, err := p.tryPublish("o", "c", img(i))
			if err != nil {
				return
			}
			mu.Lock()
			published = append(published, seq)
			mu.Unlock()
			n.Add(1)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	c := dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c", nil)
	readControl(t, c, wire.TypeHello)
	got := readFrames(t, c, 20)
	_ = c.CloseNow()
	since := got[len(got)-1].Seq

	for n.Load() < int64(len(got))+60 {
		// let the publisher move on while nobody listens
		runtimeGosched()
	}
	c = dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&client_id=c&since=%d", since), nil)
	readControl(t, c, wire.TypeHello)
	var seqs []uint64
	sawLive := false
	afterLive := 0
	for afterLive < 50 {
		if len(seqs) > 100000 {
			t.Fatalf("replay never reached the tip after %d frames", len(seqs))
		}
		m := readMsg(t, c)
		if m.ctl != nil {
			if m.ctl.Type != wire.TypeLive || sawLive {
				t.Fatalf("got control %s; want one live marker", m.raw)
			}
			sawLive = true
			continue
		}
		seqs = append(seqs, m.hdr.Seq)
		if sawLive {
			afterLive++
		}
	}
	mu.Lock()
	idx := -1
	for i, s := range published {
		if s == since {
			idx = i
		}
	}
	mu.Unlock()
	// A frame can arrive before its publisher has recorded the ack.
	for idx >= 0 && n.Load() < int64(idx+1+len(seqs)) {
		runtimeGosched()
	}
	mu.Lock()
	defer mu.Unlock()
	if idx < 0 || idx+1+len(seqs) > len(published) {
		t.Fatalf("since %d not among %d published", since, len(published))
	}
	for i, s := range seqs {
		if want := published[idx+1+i]; s != want {
			t.Fatalf("frame %d after resume: got seq %d; want %d (contiguous, no duplicates)", i, s, want)
		}
	}
}

func TestGapPastWindow(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	var seqs []uint64
	for i := range 10 {
		seqs = append(seqs, p.publish("o", "", img(i)))
	}
	st, err := p.js.Stream(context.Background(), testStreamName())
	if err != nil {
		t.Fatal(err)
	}
	// Keep the last 5: seqs[0..4] fall out of the window.
	if err := st.Purge(context.Background(), jetstream.WithPurgeKeep(5)); err != nil {
		t.Fatal(err)
	}
	c := dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&since=%d", seqs[1]), nil)
	readControl(t, c, wire.TypeHello)
	g := readControl(t, c, wire.TypeGap)
	if g.From != seqs[2] || g.To != seqs[4] {
		t.Fatalf("gap: got %d..%d; want %d..%d", g.From, g.To, seqs[2], seqs[4])
	}
	checkSeqs(t, readFrames(t, c, 5), seqs[5:])
	readControl(t, c, wire.TypeLive)
}

func TestLast(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	var mine []uint64
	for i := range 300 {
		mine = append(mine, p.publish("o", "c", img(i)))
		for range 3 {
			p.publish("noise", "", img(i))
		}
	}
	tests := []struct {
		name string
		last int
		want []uint64
	}{
		{"one", 1, mine[299:]},
		{"some", 7, mine[293:]},
		{"more than the window scan", 250, mine[50:]},
		{"more than exist", 1000, mine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&client_id=c&last=%d", tt.last), nil)
			h := readControl(t, c, wire.TypeHello)
			if h.Since == nil || *h.Since != tt.want[0]-1 {
				t.Fatalf("hello since: got %v; want %d", h.Since, tt.want[0]-1)
			}
			checkSeqs(t, readFrames(t, c, len(tt.want)), tt.want)
			readControl(t, c, wire.TypeLive)
		})
	}
}

// TestResumeAheadOfLastLookup: a resume point newer than anything this
// gateway has seen (another gateway served it) is looked up, not reset;
// one past the stream's end, or from another epoch, is reset to the
// window's start and told so.
func TestResumeAheadOfLastLookup(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	c := dial(t, hs.URL, "/v1/ws?output_id=seen", nil)
	h := readControl(t, c, wire.TypeHello)
	var last uint64
	for i := range 5 {
		last = p.publish("elsewhere", "", img(i))
	}
	c = dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=elsewhere&since=%d&epoch=%s", last, h.Epoch), nil)
	if h := readControl(t, c, wire.TypeHello); *h.Since != last {
		t.Fatalf("hello since: got %d; want %d", *h.Since, last)
	}
	// Nothing to replay: the live marker names the client's own since
	// before any frame after it is published.
	if l := readControl(t, c, wire.TypeLive); *l.Seq != last {
		t.Fatalf("live marker: got seq %d; want %d", *l.Seq, last)
	}
	next := p.publish("elsewhere", "", img(9))
	checkSeqs(t, readFrames(t, c, 1), []uint64{next})

	for _, q := range []string{fmt.Sprintf("since=%d", next+100), fmt.Sprintf("since=%d&epoch=12345", next)} {
		c = dial(t, hs.URL, "/v1/ws?output_id=elsewhere&"+q, nil)
		readControl(t, c, wire.TypeHello)
		r := readControl(t, c, wire.TypeReset)
		if r.Since == nil || *r.Since != 0 || r.Epoch != h.Epoch || r.Message == "" {
			t.Fatalf("%s: reset got since %v epoch %q %q; want since 0, epoch %s and why", q, r.Since, r.Epoch, r.Message, h.Epoch)
		}
		checkSeqs(t, readFrames(t, c, 6), []uint64{1, 2, 3, 4, 5, next})
	}
}

// TestLiveMarkerAfterReplayWithOtherConnections: a resume whose output
// ring a stream read fills, while another connection holds the events
// ring every native connection shares, gets its replayed frames before
// the live marker, never the marker first.
func TestLiveMarkerAfterReplayWithOtherConnections(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	keep := dial(t, hs.URL, "/v1/ws?output_id=keep", nil)
	readControl(t, keep, wire.TypeHello)
	for i := range 5 {
		oid := fmt.Sprintf("o%d", i)
		var want []uint64
		for j := range 3 {
			want = append(want, p.publish(oid, "", img(j)))
		}
		c := dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=%s&since=0", oid), nil)
		readControl(t, c, wire.TypeHello)
		checkSeqs(t, readFrames(t, c, len(want)), want)
		if l := readControl(t, c, wire.TypeLive); *l.Seq != want[len(want)-1] {
			t.Fatalf("%s: live marker seq %d; want %d, the last frame replayed", oid, *l.Seq, want[len(want)-1])
		}
		_ = c.CloseNow()
	}
}
