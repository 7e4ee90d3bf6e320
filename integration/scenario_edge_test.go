package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
)

// TestSlowClient: one client stalls while the others read. The others keep
// pace, the gateway's memory stays bounded by its send queues, and the
// stalled client, once it reads again, ends with every frame (or was
// closed with 4008 and resumed): nothing is dropped silently.
func TestSlowClient(t *testing.T) {
	const (
		fast   = 10
		frames = 200
		side   = 128 // 128x128 RGB noise: about 49 KiB per frame
		// rssBound is the RSS growth allowed while 10 MB are held back:
		// send queues are 256 KiB per connection.
		rssBound = 96 << 20
	)
	s := newStack(t, stackOptions{gateway: []string{"--cache-bytes=1048576"}})
	gw := s.gateways[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := ledger.New(scenarioName(t))
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	var fastRecs []*ledger.Client
	for i := range fast {
		w := watch(t, wctx, l, fmt.Sprintf("fast%d", i), []string{gw.URL}, client.Config{OutputID: "slow", Since: u64(0)})
		ws = append(ws, w)
		fastRecs = append(fastRecs, w.rec)
	}
	hold := make(chan struct{})
	slow := watchHeld(t, wctx, l, "slow", []string{gw.URL}, client.Config{OutputID: "slow", Since: u64(0)}, hold)
	ws = append(ws, slow)
	waitHello(t, ctx, ws)

	rss0, err := gw.RSS()
	if err != nil {
		t.Fatal(err)
	}
	var peak int64
	sctx, scancel := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		for sctx.Err() == nil {
			if r, err := gw.RSS(); err == nil {
				peak = max(peak, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	pub := newPublisher(s.producer.URL, l)
	pub.width, pub.height = side, side
	pctx, pcancel := context.WithCancel(ctx)
	go pub.steady(pctx, 50, true, [][2]string{{"slow", ""}})
	waitAcked(t, ctx, l, frames)
	pcancel()

	// The fast clients get everything while the slow one is still stalled.
	if err := l.WaitFor(ctx, fastRecs...); err != nil {
		t.Errorf("fast clients: %v", err)
	}
	t.Logf("fast clients complete; the stalled client has handled %d of %d frames", slow.rec.Seen(), l.Acked())
	if n, ok := metric(ctx, gw.URL, "framecast_gateway_stream_reads_total"); ok {
		t.Logf("gateway shared stream reads: %v", n)
	}
	close(hold)
	finish(t, ctx, l)
	scancel()
	sampling.Wait()
	stopWatchers(t, wcancel, ws)
	t.Logf("gateway RSS: start %d MiB, peak %d MiB; slow client closes with 4008: %d", rss0>>20, peak>>20, slow.closeCount(4008))
	if peak-rss0 > rssBound {
		t.Errorf("gateway RSS growth: got %d MiB; want at most %d MiB", (peak-rss0)>>20, rssBound>>20)
	}
}

// TestGatewayCutOffFromNATS: a gateway loses NATS (a proxy between them is
// cut). Its /readyz fails; when the proxy is restored it is ready again
// and its clients get the frames published meanwhile.
func TestGatewayCutOffFromNATS(t *testing.T) {
	const clients = 10
	s := newStack(t, stackOptions{gatewayProxy: true})
	gw := s.gateways[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := ledger.New(scenarioName(t))
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i := range clients {
		cfg := client.Config{OutputID: fmt.Sprintf("cut%d", i%2), ClientID: fmt.Sprintf("c%d", i), Since: u64(0)}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("client%d", i), []string{gw.URL}, cfg))
	}
	waitHello(t, ctx, ws)
	pub := newPublisher(s.producer.URL, l)
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan struct{})
	go func() {
		defer close(pdone)
		pub.steady(pctx, 20, true, [][2]string{{"cut0", ""}, {"cut1", ""}, {"cut0", "c0"}})
	}()

	waitAcked(t, ctx, l, 50)
	s.proxy.Cut()
	if err := gw.WaitStatus(ctx, "/readyz", http.StatusServiceUnavailable); err != nil {
		t.Errorf("gateway /readyz while cut off: %v", err)
	}
	atCut := l.Acked()
	waitAcked(t, ctx, l, atCut+50)
	t.Logf("%d frames published while the gateway was cut off", l.Acked()-atCut)
	s.proxy.Restore()
	if err := gw.WaitStatus(ctx, "/readyz", http.StatusOK); err != nil {
		t.Errorf("gateway /readyz after restore: %v", err)
	}
	waitAcked(t, ctx, l, l.Acked()+50)
	pcancel()
	<-pdone
	finish(t, ctx, l)
	stopWatchers(t, wcancel, ws)
}
