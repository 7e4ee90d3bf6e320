package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/wire"
)

// TestDrain: Drain closes open sockets with 1001, refuses new ones, and a
// client resuming on a second gateway loses nothing. No goroutine leaks.
func TestDrain(t *testing.T) {
	ns := testNATS(t)
	p := newPublisher(t, ns)
	g2, hs2 := testGateway(t, ns, func(c *Config) { c.ID = "gw-2" })
	_ = g2
	base := ownGoroutines()

	g1, err := New(context.Background(), Config{NATSURL: ns.ClientURL(), Stream: testStream, ID: "gw-1", AllowAnonymous: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hs1 := httptest.NewServer(g1.Handler())
	waitReady(t, hs1.URL)

	c := dial(t, hs1.URL, "/v1/ws?output_id=o&client_id=c", nil)
	readControl(t, c, wire.TypeHello)
	var want []uint64
	for i := range 10 {
		want = append(want, p.publish("o", "c", img(i)))
	}
	got := readFrames(t, c, 5)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- g1.Drain(ctx) }()
	// Frames published during the drain go to the new gateway on resume.
	for i := 10; i < 20; i++ {
		want = append(want, p.publish("o", "c", img(i)))
	}
	for {
		m, err := tryRead(c)
		if err != nil {
			if code := closeStatus(err); code != wire.CloseGoingAway {
				t.Fatalf("close: got %v (%v); want %d", code, err, wire.CloseGoingAway)
			}
			break
		}
		if m.ctl != nil {
			t.Fatalf("got control %s while draining; want frames then close", m.raw)
		}
		got = append(got, m.hdr)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	if code := getJSON(t, hs1.URL+"/v1/ws?output_id=o", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after drain: got %d; want 503", code)
	}
	hs1.Close()

	since := got[len(got)-1].Seq
	c2 := dial(t, hs2.URL, fmt.Sprintf("/v1/ws?output_id=o&client_id=c&since=%d", since), nil)
	readControl(t, c2, wire.TypeHello)
	rest := readFrames(t, c2, len(want)-len(got))
	checkSeqs(t, append(got, rest...), want)
	readControl(t, c2, wire.TypeLive)
	_ = c2.CloseNow()

	for i := 0; ownGoroutines() > base; i++ {
		if i > 500 {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("gateway goroutines after drain: got %d; want at most %d\n%s", ownGoroutines(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ownGoroutines counts the goroutines of gateways, websockets and NATS
// clients, leaving out the embedded NATS server's and the tests' own.
func ownGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "nats-server") {
			continue
		}
		if strings.Contains(g, "framecast/services/gateway") || strings.Contains(g, "coder/websocket") || strings.Contains(g, "nats-io/nats.go") {
			n++
		}
	}
	return n
}

// TestDrainAndCloseConcurrently: Drain and Close may be called together and
// more than once; each returns, nothing panics, the socket is closed.
func TestDrainAndCloseConcurrently(t *testing.T) {
	ns := testNATS(t)
	g, err := New(context.Background(), Config{NATSURL: ns.ClientURL(), Stream: testStream, ID: "gw", AllowAnonymous: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	waitReady(t, hs.URL)
	c := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
	readControl(t, c, wire.TypeHello)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan string, 3)
	go func() { _ = g.Drain(ctx); done <- "drain 1" }()
	go func() { _ = g.Drain(ctx); done <- "drain 2" }()
	go func() { _ = g.Close(); done <- "close" }()
	for range 3 {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("Drain/Close did not return within 10s")
		}
	}
	if _, err := tryRead(c); err == nil {
		t.Fatal("socket still open after Drain and Close; want it closed")
	}
}
