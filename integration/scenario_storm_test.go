package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/wire"
)

// TestResumeStormLeaderSIGKILL: 300 clients resume from sequence 0 on an
// output holding frames, over two gateways, as the NATS server leading
// the R3 stream is SIGKILLed, and frames keep being published. Each
// gateway reads the stream for all its clients at once (one shared read
// fills its ring of the output) and retries that read through the leader
// election: every client ends with every frame once, in order, none is
// closed with 4008 and none is told of a gap.
func TestResumeStormLeaderSIGKILL(t *testing.T) {
	const (
		clients = 300
		stored  = 20 // frames on the output before the storm
		live    = 20 // frames published from the storm on
		oid     = "storm"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newStack(t, stackOptions{natsServers: 3, gateways: 2})
	l := ledger.New(scenarioName(t))
	pub := newPublisher(s.producer.URL, l)
	for range stored {
		if _, err := pub.publish(ctx, oid, "", true); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(s.nats.Connect())
	if err != nil {
		t.Fatal(err)
	}
	leader, err := s.nats.StreamLeader(ctx, js, stream.DefaultName)
	if err != nil {
		t.Fatal(err)
	}

	// The storm: the leader dies, and every client dials at once while
	// the cluster elects another: the gateways' first stream reads meet
	// a stream without a leader.
	t.Logf("SIGKILL stream leader %s", leader.Name)
	leader.Kill()
	start := time.Now()
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i := range clients {
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("client%d", i), s.gatewayURLs(i%2), client.Config{OutputID: oid, Since: u64(0)}))
	}
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan struct{})
	go func() { defer close(pdone); pub.steady(pctx, 20, true, [][2]string{{oid, ""}}) }()
	waitHello(t, ctx, ws)
	t.Logf("every client had its hello %v after the leader's SIGKILL", time.Since(start).Round(time.Millisecond))
	waitAcked(t, ctx, l, stored+live)
	pcancel()
	<-pdone
	next, err := s.nats.StreamLeader(ctx, js, stream.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new stream leader %s", next.Name)

	r := finish(t, ctx, l)
	stopWatchers(t, wcancel, ws)
	if r.Gapped != 0 {
		t.Errorf("frames reported as gaps: got %d; want 0 (the window holds every frame)", r.Gapped)
	}
	if closed := closedWith(ws, wire.CloseSlowClient); closed != 0 {
		t.Errorf("connections closed with 4008: got %d; want 0 (the gateways retry their reads)", closed)
	}
	for _, gw := range s.gateways {
		if b, err := os.ReadFile(gw.Log); err == nil {
			t.Logf("%s: %d stream reads failed and were retried", gw.Name, bytes.Count(b, []byte("stream read failed; retrying")))
		}
		logMetrics(t, ctx, gw.URL, "framecast_gateway_stream_reads_total", "framecast_gateway_jetstream_requests_total",
			`framecast_gateway_resumes_total{from="memory"}`, `framecast_gateway_resumes_total{from="stream"}`,
			"framecast_gateway_live_holes_total", "framecast_gateway_slow_client_closes_total")
	}
	t.Logf("producer statuses: %v", pub.Statuses())
}

// logMetrics logs the named samples of a service's /metrics ("-" for
// one it does not have).
func logMetrics(t testing.TB, ctx context.Context, url string, names ...string) {
	t.Helper()
	var b []byte
	for _, n := range names {
		s := "-" // no such sample
		if v, ok := metric(ctx, url, n); ok {
			s = strconv.FormatFloat(v, 'f', -1, 64)
		}
		b = fmt.Appendf(b, " %s=%s", n, s)
	}
	t.Logf("%s:%s", url, b)
}
