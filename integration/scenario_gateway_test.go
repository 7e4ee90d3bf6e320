package integration_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
)

// gatewayLoss runs 100 clients over two gateways while frames are
// published at a steady rate, stops gateway 0 with sig part way, and checks
// that every acknowledged frame reached every client that watches it: the
// clients of gateway 0 reconnect to gateway 1 with since.
func gatewayLoss(t *testing.T, sig syscall.Signal) (*ledger.Ledger, []*watcher, []*watcher) {
	const (
		clients = 100
		rate    = 50 // frames per second
		before  = 100
		after   = 150
	)
	s := newStack(t, stackOptions{gateways: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := ledger.New(scenarioName(t))
	outs := outputs("o", 10)

	wctx, wcancel := context.WithCancel(ctx)
	var onKilled, onOther []*watcher
	var all []*watcher
	for i := range clients {
		cfg := client.Config{OutputID: outs[i%len(outs)], ClientID: fmt.Sprintf("c%d", i), Since: u64(0)}
		w := watch(t, wctx, l, fmt.Sprintf("client%d", i), s.gatewayURLs(i%2), cfg)
		all = append(all, w)
		if i%2 == 0 {
			onKilled = append(onKilled, w)
		} else {
			onOther = append(onOther, w)
		}
	}
	waitHello(t, ctx, all)

	// Broadcast frames to every output, and frames targeted at the first
	// two clients of each output.
	var targets [][2]string
	for i, o := range outs {
		targets = append(targets, [2]string{o, ""}, [2]string{o, fmt.Sprintf("c%d", i)}, [2]string{o, fmt.Sprintf("c%d", i+len(outs))})
	}
	pub := newPublisher(s.producer.URL, l)
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan struct{})
	go func() { defer close(pdone); pub.steady(pctx, rate, false, targets) }()

	waitAcked(t, ctx, l, before)
	if err := s.gateways[0].Signal(sig); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, ctx, l, before+after)
	if sig == syscall.SIGTERM {
		if err := s.gateways[0].Wait(30 * time.Second); err != nil {
			t.Errorf("gateway exit after SIGTERM: got %v; want exit status 0", err)
		}
	}
	pcancel()
	<-pdone

	finish(t, ctx, l)
	stopWatchers(t, wcancel, all)
	t.Logf("producer statuses: %v", pub.Statuses())
	return l, onKilled, onOther
}

// TestGatewaySIGKILL: a gateway is SIGKILLed mid-stream; its clients
// reconnect to the other with since and lose nothing.
func TestGatewaySIGKILL(t *testing.T) {
	_, onKilled, _ := gatewayLoss(t, syscall.SIGKILL)
	for _, w := range onKilled {
		if n := w.closeCount(-1); n == 0 {
			t.Errorf("%s: disconnects without a close frame: got 0; want at least 1", w.rec.Name)
		}
	}
}

// TestGatewaySIGTERM: a gateway drains on SIGTERM; its clients get 1001,
// resume on the other gateway and lose nothing.
func TestGatewaySIGTERM(t *testing.T) {
	_, onKilled, _ := gatewayLoss(t, syscall.SIGTERM)
	for _, w := range onKilled {
		if n := w.closeCount(1001); n != 1 {
			t.Errorf("%s: closes with 1001: got %d; want 1", w.rec.Name, n)
		}
	}
}
