package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/wire"
)

// TestSlowConsumerDrop: NATS drops live frames of one output on the
// gateway's subscription (a slow consumer). The gateway runs with
// --hub-buffer=64 (64 messages between NATS and its dispatcher instead of
// 1024) and is paused (SIGSTOP, as a CPU-throttled container is) while a
// burst is published to that output, so its socket holds hundreds of
// frames when it resumes; its dispatcher, waking 20 connections a frame,
// falls behind the NATS reader. (With the default buffer the same
// happens with 100 connections and a burst of 3000 frames, more than the
// test's clients can check in a minute.) The output's ring must heal with
// stream reads, at most one a hole and never one a connection: every
// client ends with every frame once, in order, without a gap.
func TestSlowConsumerDrop(t *testing.T) {
	const (
		burstClients = 20
		calmClients  = 5
		burst        = 400 // frames published while the gateway is paused
		around       = 5   // frames to each output before and after
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newStack(t, stackOptions{gateway: []string{"--hub-buffer=64"}})
	gw := s.gateways[0]
	l := ledger.New(scenarioName(t))
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i := range burstClients + calmClients {
		oid := "burst"
		if i >= burstClients {
			oid = "calm"
		}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("%s%d", oid, i), []string{gw.URL}, client.Config{OutputID: oid}))
	}
	waitHello(t, ctx, ws)
	pub := newPublisher(s.producer.URL, l)
	both := func() {
		for range around {
			for _, oid := range []string{"burst", "calm"} {
				if _, err := pub.publish(ctx, oid, "", true); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	both()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	holes0, _ := metric(ctx, gw.URL, "framecast_gateway_live_holes_total")
	reads0, _ := metric(ctx, gw.URL, "framecast_gateway_stream_reads_total")

	if err := gw.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.Acked() < 2*around+burst && ctx.Err() == nil {
				pub.publish(ctx, "burst", "", true)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d frames published to one output in %v with the gateway paused", l.Acked()-2*around, time.Since(paused).Round(time.Millisecond))
	resumed := time.Now()
	if err := gw.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wait, wdone := context.WithTimeout(ctx, 45*time.Second)
	err := l.WaitFor(wait, recs(ws[:burstClients])...)
	wdone()
	if err != nil {
		t.Errorf("clients of the burst: %v", err)
	} else {
		t.Logf("every client had the burst %v after the gateway resumed", time.Since(resumed).Round(time.Millisecond))
		both()
	}
	holes, _ := metric(ctx, gw.URL, "framecast_gateway_live_holes_total")
	reads, _ := metric(ctx, gw.URL, "framecast_gateway_stream_reads_total")
	behind, _ := metric(ctx, gw.URL, "framecast_gateway_cursors_behind")
	logMetrics(t, ctx, gw.URL, "framecast_gateway_frames_delivered_total", "framecast_gateway_ring_bytes")

	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	r := finish(t, fctx, l)
	fcancel()
	stopWatchers(t, wcancel, ws)
	if r.Gapped != 0 {
		t.Errorf("frames reported as gaps: got %d; want 0", r.Gapped)
	}
	if closed := closedWith(ws, wire.CloseSlowClient); closed != 0 {
		t.Errorf("connections closed with 4008: got %d; want 0", closed)
	}
	b, err := os.ReadFile(gw.Log)
	if err != nil {
		t.Fatal(err)
	}
	drops := bytes.Count(b, []byte(`"msg":"hub fell behind NATS on a subscription; its ring heals with one stream read","gateway":"gw0","subject":"live.outputs.burst.*"`))
	calm := bytes.Count(b, []byte(`"subject":"live.outputs.calm.*"`))
	t.Logf("slow-consumer drops reported on the burst's subscription: %d (on the other: %d); live holes +%v, stream reads +%v, cursors behind %v",
		drops, calm, holes-holes0, reads-reads0, behind)
	if drops == 0 {
		t.Fatal("NATS reported no slow consumer: the burst did not overflow the gateway's subscription")
	}
	if holes-holes0 < 1 || reads-reads0 < 1 || reads-reads0 > holes-holes0 {
		t.Errorf("live holes +%v, stream reads +%v; want at least one of each and at most one read per hole", holes-holes0, reads-reads0)
	}
}
