package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/stream"
)

// natsFault is the common shape of the NATS fault scenarios: a 3-node
// cluster (stream replicas 3), two gateways, 20 clients, and retrying
// publishers (each request repeated with its Idempotency-Key until 200).
type natsFault struct {
	t       *testing.T
	s       *stack
	l       *ledger.Ledger
	pub     *publisher
	ws      []*watcher
	wcancel context.CancelFunc
	pcancel context.CancelFunc
	pdone   sync.WaitGroup
}

func startNATSFault(t *testing.T, ctx context.Context) *natsFault {
	const clients = 20
	f := &natsFault{t: t, s: newStack(t, stackOptions{natsServers: 3, gateways: 2}), l: ledger.New(scenarioName(t))}
	outs := outputs("n", 5)
	wctx, wcancel := context.WithCancel(ctx)
	f.wcancel = wcancel
	for i := range clients {
		cfg := client.Config{OutputID: outs[i%len(outs)], ClientID: fmt.Sprintf("c%d", i), Since: u64(0)}
		f.ws = append(f.ws, watch(t, wctx, f.l, fmt.Sprintf("client%d", i), f.s.gatewayURLs(i%2), cfg))
	}
	waitHello(t, ctx, f.ws)
	f.pub = newPublisher(f.s.producer.URL, f.l)
	pctx, pcancel := context.WithCancel(ctx)
	f.pcancel = pcancel
	// Four sequential retrying publishers, 10 frames/s each, one per
	// output plus targeted frames.
	for w := range 4 {
		targets := [][2]string{{outs[w], ""}, {outs[4], ""}, {outs[w], fmt.Sprintf("c%d", w)}}
		f.pdone.Add(1)
		go func() {
			defer f.pdone.Done()
			f.pub.steady(pctx, 10, true, targets)
		}()
	}
	return f
}

// finish stops publishing, waits for every acknowledged frame and checks
// the accounts.
func (f *natsFault) finish(ctx context.Context) ledger.Report {
	f.pcancel()
	f.pdone.Wait()
	r := finish(f.t, ctx, f.l)
	stopWatchers(f.t, f.wcancel, f.ws)
	f.t.Logf("producer statuses: %v", f.pub.Statuses())
	return r
}

// TestNATSLeaderSIGKILL: the NATS server leading the stream is SIGKILLed
// while frames are published. Every frame the producer acknowledged is
// delivered, and retries with the same Idempotency-Key store nothing twice.
func TestNATSLeaderSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := startNATSFault(t, ctx)
	js, err := jetstream.New(f.s.nats.Connect())
	if err != nil {
		t.Fatal(err)
	}
	leader, err := f.s.nats.StreamLeader(ctx, js, stream.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	waitAcked(t, ctx, f.l, 100)
	t.Logf("SIGKILL stream leader %s at %d acknowledged frames", leader.Name, f.l.Acked())
	leader.Kill()
	waitAcked(t, ctx, f.l, 250)
	next, err := f.s.nats.StreamLeader(ctx, js, stream.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new stream leader %s", next.Name)
	leader.Start()
	f.s.nats.WaitReady()
	waitAcked(t, ctx, f.l, 350)
	f.finish(ctx)
	checkStoredOnce(t, ctx, js, f.l)
}

// checkStoredOnce reads the whole stream, message by message (retrying
// while the cluster settles), and fails if a frame id is stored twice.
func checkStoredOnce(t *testing.T, ctx context.Context, js jetstream.JetStream, l *ledger.Ledger) {
	t.Helper()
	seen := map[uint64]uint64{} // id -> seq
	walkStream(t, ctx, js, func(seq uint64, m *jetstream.RawStreamMsg) {
		id, err := ledger.ID(m.Data)
		if err != nil {
			t.Fatalf("stored seq %d: %v", seq, err)
		}
		if prev, ok := seen[id]; ok {
			t.Errorf("frame id %d stored twice: seq %d and %d", id, prev, seq)
		}
		seen[id] = seq
	})
	t.Logf("stream holds %d frames, each id once; %d acknowledged", len(seen), l.Acked())
}

// walkStream calls visit with every message the stream holds, first to
// last, retrying each lookup while the cluster settles (until ctx ends).
func walkStream(t *testing.T, ctx context.Context, js jetstream.JetStream, visit func(seq uint64, m *jetstream.RawStreamMsg)) {
	t.Helper()
	// retry calls get until it succeeds, or fails the test when ctx ends.
	retry := func(what string, get func(context.Context) error) {
		for {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			err := get(rctx)
			rcancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var st jetstream.Stream
	retry("stream info", func(ctx context.Context) (err error) {
		st, err = js.Stream(ctx, stream.DefaultName)
		return err
	})
	info := st.CachedInfo()
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		var m *jetstream.RawStreamMsg
		retry(fmt.Sprintf("read stream seq %d", seq), func(ctx context.Context) (err error) {
			m, err = st.GetMsg(ctx, seq)
			return err
		})
		visit(seq, m)
	}
}

// TestNATSClusterOutage: the whole NATS cluster stops for 10 s and comes
// back with the same stores and ports. The producer answers 503 meanwhile
// and recovers by itself; gateways resubscribe; clients get every
// acknowledged frame.
func TestNATSClusterOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := startNATSFault(t, ctx)
	waitAcked(t, ctx, f.l, 100)

	stopped := time.Now()
	var wg sync.WaitGroup
	for _, nd := range f.s.nats.Nodes {
		wg.Add(1)
		go func(nd *topo.NATSNode) { defer wg.Done(); nd.Stop() }(nd)
	}
	wg.Wait()
	t.Logf("cluster stopped at %d acknowledged frames", f.l.Acked())

	// The producer says it cannot publish.
	if err := f.s.producer.WaitStatus(ctx, "/readyz", http.StatusServiceUnavailable); err != nil {
		t.Errorf("producer /readyz during outage: %v", err)
	}
	for f.pub.Statuses()[http.StatusServiceUnavailable] == 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Until(stopped.Add(10 * time.Second)))

	atRestart := f.l.Acked()
	for _, nd := range f.s.nats.Nodes {
		nd.Start()
	}
	f.s.nats.WaitReady()
	for _, svc := range append([]*topo.Service{f.s.producer}, f.s.gateways...) {
		if err := svc.WaitStatus(ctx, "/readyz", http.StatusOK); err != nil {
			t.Errorf("%s /readyz after the outage: %v", svc.Name, err)
		}
	}
	waitAcked(t, ctx, f.l, atRestart+100)
	f.finish(ctx)

	st := f.pub.Statuses()
	if st[http.StatusServiceUnavailable] == 0 {
		t.Errorf("503 answers during the outage: got 0; want some")
	}
	for code, n := range st {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("producer answered %d %d times; want only 200 and 503", code, n)
		}
	}
}
