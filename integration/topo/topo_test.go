package topo_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/shared/stream"
)

var bins topo.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "framecast-topo-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = topo.BuildNATS(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestClusterSurvivesLeaderKill checks the cluster helper itself: three
// servers form a cluster, the stream has three replicas, and after the
// stream leader is SIGKILLed a new leader takes writes and the old one
// rejoins on restart.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	env := topo.NewEnv(t, bins)
	n := env.StartNATS(topo.NATSOptions{Servers: 3})
	nc := n.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A cluster that answers requests may not know all its peers yet
	// ("no suitable peers for placement"): retry, as the services do.
	for {
		_, err := stream.Ensure(ctx, js, stream.Config{Replicas: 3})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	leader, err := n.StreamLeader(ctx, js, stream.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "outputs.a.~all", []byte("1")); err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	var ack *jetstream.PubAck
	// Each attempt has its own deadline: a request sent just before the
	// connection moved to another server gets no reply. The message id
	// keeps a retry from storing the frame twice.
	for ack == nil {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err = js.Publish(actx, "outputs.a.~all", []byte("2"), jetstream.WithMsgID("second"))
		acancel()
		if ctx.Err() != nil {
			t.Fatalf("publish after leader kill: %v", err)
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if ack.Sequence != 2 {
		t.Errorf("seq after failover: got %d; want 2", ack.Sequence)
	}
	next, err := n.StreamLeader(ctx, js, stream.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Errorf("leader after kill: got %s again", next.Name)
	}
	leader.Start()
	n.WaitReady()
}

// TestProxyCutAndRestore checks that a cut proxy drops the NATS
// connection and a restored one lets it reconnect.
func TestProxyCutAndRestore(t *testing.T) {
	env := topo.NewEnv(t, bins)
	n := env.StartNATS(topo.NATSOptions{})
	p := env.StartProxy(n.Nodes[0].URL()[len("nats://"):])
	disc := make(chan struct{}, 8)
	reco := make(chan struct{}, 8)
	nc, err := nats.Connect(p.URL(),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { disc <- struct{}{} }),
		nats.ReconnectHandler(func(*nats.Conn) { reco <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p.Cut()
	<-disc
	time.Sleep(300 * time.Millisecond) // let some reconnects be refused
	if nc.IsConnected() {
		t.Fatal("connected through a cut proxy")
	}
	p.Restore()
	<-reco
	if err := nc.Flush(); err != nil {
		t.Errorf("flush after restore: %v", err)
	}
}

// TestProxyBlackhole checks that a blackholed proxy keeps the open
// connection open but forwards nothing on it, ever, and refuses new ones
// until restored.
func TestProxyBlackhole(t *testing.T) {
	env := topo.NewEnv(t, bins)
	n := env.StartNATS(topo.NATSOptions{})
	p := env.StartProxy(n.Nodes[0].URL()[len("nats://"):])
	nc, err := nats.Connect(p.URL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush before the blackhole: %v", err)
	}
	p.Blackhole()
	if err := nc.FlushTimeout(300 * time.Millisecond); err == nil {
		t.Error("flush through a blackholed proxy: got a pong; want none")
	}
	if !nc.IsConnected() {
		t.Errorf("connection status %v; want it left open", nc.Status())
	}
	if c, err := nats.Connect(p.URL(), nats.NoReconnect(), nats.Timeout(time.Second)); err == nil {
		c.Close()
		t.Error("new connection through a blackholed proxy: connected; want refused")
	}
	p.Restore()
	fresh, err := nats.Connect(p.URL(), nats.NoReconnect())
	if err != nil {
		t.Fatalf("new connection after restore: %v", err)
	}
	defer fresh.Close()
	if err := fresh.Flush(); err != nil {
		t.Errorf("flush on a new connection after restore: %v", err)
	}
	if err := nc.FlushTimeout(300 * time.Millisecond); err == nil {
		t.Error("flush on the blackholed connection after restore: got a pong; want it silent still")
	}
}
