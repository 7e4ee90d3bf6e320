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

// TestLargeFramesAcrossReplicas sends every frame by reference through the
// large-frame bucket of a 3-node cluster, the producer writing through one
// server and each gateway reading through another. A gateway gets a frame
// as soon as the stream stores it, often before its own server's replica
// of the bucket has applied the image: every frame must still arrive, live
// and replayed, and none may be reported as a gap.
func TestLargeFramesAcrossReplicas(t *testing.T) {
	const frames = 60
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newStack(t, stackOptions{natsServers: 3, gateways: 2, pinNodes: true, producer: []string{"--inline-limit=1"}})
	l := ledger.New(scenarioName(t))
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i := range 4 {
		cfg := client.Config{OutputID: "large", Since: u64(0)}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("live%d", i), s.gatewayURLs(i%2), cfg))
	}
	waitHello(t, ctx, ws)
	pub := newPublisher(s.producer.URL, l)
	pub.width, pub.height = 600, 600 // about 1 MiB of incompressible PNG
	for range frames {
		if _, err := pub.publish(ctx, "large", "", true); err != nil {
			t.Fatal(err)
		}
	}
	// Replayed from the stream, the images are read through the other
	// servers' replicas too.
	for i := range 2 {
		cfg := client.Config{OutputID: "large", Since: u64(0)}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("replay%d", i), s.gatewayURLs(i), cfg))
	}
	r := finish(t, ctx, l)
	if r.Gapped != 0 {
		t.Errorf("%d frames reported as gaps; every image was stored before its frame and is inside the window", r.Gapped)
	}
	if r.Expected != len(ws)*frames {
		t.Errorf("expected deliveries: got %d; want %d", r.Expected, len(ws)*frames)
	}
	stopWatchers(t, wcancel, ws)
}

// TestReplayFromLaggingReplica connects clients, each from sequence 0,
// while frames are being published and one replica of the stream lags:
// its server is stopped (SIGSTOP) while the clients connect and resumed a
// second later, when it has frames to catch up on. Every client must get
// every frame. Before the replay watched its consumer's delivery
// sequence, about one run in two lost one pull batch (8 frames) for one
// client with no gap message: the consumer's server answered a no-wait
// pull after the gateway had stopped waiting for it (docs/reliability.md).
func TestReplayFromLaggingReplica(t *testing.T) {
	const rounds, perRound = 5, 4
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The producer writes through node 0, the gateway reads through node
	// 1; node 2 is only a replica.
	s := newStack(t, stackOptions{natsServers: 3, gateways: 1, pinNodes: true, gateway: []string{"--log-level=debug"}})
	lagging := s.nats.Nodes[2].Proc()
	l := ledger.New(scenarioName(t))
	pub := newPublisher(s.producer.URL, l)
	pub.width, pub.height = 128, 128 // 48 KiB a frame
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan struct{})
	go func() {
		defer close(pdone)
		pub.steady(pctx, 100, false, [][2]string{{"replay", ""}})
	}()
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for round := range rounds {
		if err := lagging.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for i := range perRound {
			cfg := client.Config{OutputID: "replay", Since: u64(0)}
			ws = append(ws, watch(t, wctx, l, fmt.Sprintf("client%d.%d", round, i), s.gatewayURLs(0), cfg))
		}
		time.Sleep(time.Second)
		if err := lagging.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		waitHello(t, ctx, ws)
		time.Sleep(300 * time.Millisecond)
	}
	pcancel()
	<-pdone
	r := finish(t, ctx, l)
	if r.Gapped != 0 {
		t.Errorf("%d frames reported as gaps; the window holds every frame", r.Gapped)
	}
	waits, ok := metric(ctx, s.gateways[0].URL, "framecast_gateway_replay_replica_waits_total")
	if !ok {
		t.Error("gateway /metrics has no framecast_gateway_replay_replica_waits_total")
	}
	t.Logf("framecast_gateway_replay_replica_waits_total = %v", waits)
	stopWatchers(t, wcancel, ws)
}
