package gateway

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/natsembed"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/wire"
)

// TestReplayRidesOutNATSRestart: stream reads that fail while NATS
// restarts (as during a stream leader failover) are retried, and the
// replay goes on where it stopped instead of cutting the client off with
// 4008.
func TestReplayRidesOutNATSRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(port int) *server.Server {
		t.Helper()
		ns, err := natsembed.Start(natsembed.Config{StoreDir: dir, Port: port})
		if err != nil {
			t.Fatalf("start nats: %v", err)
		}
		return ns
	}
	var cur atomic.Pointer[server.Server]
	cur.Store(start(0))
	t.Cleanup(func() { ns := cur.Load(); ns.Shutdown(); ns.WaitForShutdown() })
	ns := cur.Load()
	port := ns.Addr().(*net.TCPAddr).Port

	fileStream := stream.Config{MaxBytes: 512 << 20} // survives the restart
	_, hs := testGateway(t, ns, func(c *Config) { c.Stream = fileStream })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{t: t, nc: nc, js: js}
	const n = 40
	pad := bytes.Repeat([]byte{7}, 512<<10) // 20 MiB in all: more than the socket buffers hold
	var want []uint64
	for i := range n {
		want = append(want, p.publish("o", "", append(img(i), pad...)))
	}

	c := dial(t, hs.URL, "/v1/ws?output_id=o&since=0", nil)
	readControl(t, c, wire.TypeHello)
	got := readFrames(t, c, 1)

	ns.Shutdown()
	ns.WaitForShutdown()
	// Let the replay reach a read that fails while NATS is away.
	time.Sleep(time.Second)
	cur.Store(start(port))

	got = append(got, readFrames(t, c, n-1)...)
	for i, h := range got {
		if h.Seq != want[i] {
			t.Fatalf("frame %d: got seq %d; want %d", i, h.Seq, want[i])
		}
	}
}
