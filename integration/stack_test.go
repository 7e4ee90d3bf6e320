package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/integration/topo"
)

// stackOptions shape a test's topology.
type stackOptions struct {
	natsServers int       // default 1; 3 gives stream replicas 3
	gateways    int       // default 1
	stream      []string  // extra stream flags for producer and gateways, e.g. --stream-max-age=2s
	gateway     []string  // extra gateway flags
	producer    []string  // extra producer flags
	natsAuth    string    // NATS authorization block
	natsAdmin   [2]string // the test's NATS user and password with natsAuth; it ensures the stream
	natsEnv     []string  // added to the NATS servers' environment
	// producerUser and gatewayUser, when set, are the services' NATS user
	// and password.
	producerUser, gatewayUser [2]string
	producerURL               string // NATS URL for the producer; default every node
	gatewayURL                string // NATS URL for the gateways; default every node
	// gatewayProxy puts a proxy the test can cut between the gateways and
	// the first NATS node.
	gatewayProxy bool
	// pinNodes connects the producer to the first NATS node only and
	// gateway i to node i+1 only (modulo the nodes), so that the
	// gateways read from other servers, and replicas, than the one the
	// producer writes through.
	pinNodes bool
}

// stack is a running topology: NATS, one producer and the gateways.
type stack struct {
	env      *topo.Env
	nats     *topo.NATS
	producer *topo.Service
	gateways []*topo.Service
	proxy    *topo.Proxy // with gatewayProxy
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	if o.natsServers == 0 {
		o.natsServers = 1
	}
	if o.gateways == 0 {
		o.gateways = 1
	}
	env := topo.NewEnv(t, bins)
	s := &stack{env: env, nats: env.StartNATS(topo.NATSOptions{
		Servers: o.natsServers, Authorization: o.natsAuth, User: o.natsAdmin[0], Password: o.natsAdmin[1],
		Env: o.natsEnv,
	})}
	streamFlags := append([]string{fmt.Sprintf("--stream-replicas=%d", o.natsServers)}, o.stream...)
	if o.producerUser[0] != "" {
		o.producerURL = s.nats.URLWithUser(o.producerUser[0], o.producerUser[1])
	}
	if o.gatewayUser[0] != "" {
		o.gatewayURL = s.nats.URLWithUser(o.gatewayUser[0], o.gatewayUser[1])
	}
	if o.producerURL == "" {
		o.producerURL = s.nats.URL()
	}
	if o.gatewayProxy {
		s.proxy = env.StartProxy(strings.TrimPrefix(s.nats.Nodes[0].URL(), "nats://"))
		o.gatewayURL = s.proxy.URL()
	}
	if o.gatewayURL == "" {
		o.gatewayURL = s.nats.URL()
	}
	if o.pinNodes {
		o.producerURL = s.nats.Nodes[0].URL()
	}
	// The deployment's ensure step, as the test's NATS user (natsAdmin):
	// the services only verify the stream.
	s.nats.EnsureStream(streamFlags)
	s.producer = env.StartProducer("producer", o.producerURL, append(streamFlags, o.producer...)...)
	for i := range o.gateways {
		url := o.gatewayURL
		if o.pinNodes {
			url = s.nats.Nodes[(i+1)%len(s.nats.Nodes)].URL()
		}
		flags := append([]string{"--allow-anonymous"}, streamFlags...)
		s.gateways = append(s.gateways, env.StartGateway(fmt.Sprintf("gw%d", i), url, append(flags, o.gateway...)...))
	}
	return s
}

// gatewayURLs lists the gateways' base URLs starting at index first.
func (s *stack) gatewayURLs(first int) []string { return gatewayURLs(s.gateways, first) }

// gatewayURLs lists the gateways' URLs starting with gws[first], so that
// clients spread their first connections over them.
func gatewayURLs(gws []*topo.Service, first int) []string {
	var urls []string
	for i := range gws {
		urls = append(urls, gws[(first+i)%len(gws)].URL)
	}
	return urls
}

// waitAcked waits until the ledger holds at least n acknowledged frames.
func waitAcked(t testing.TB, ctx context.Context, l *ledger.Ledger, n int) {
	t.Helper()
	for l.Acked() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("acknowledged frames: got %d; want %d: %v", l.Acked(), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// finish waits for every acknowledged frame to reach its clients (up to
// the ctx deadline), then logs and asserts the accounts.
func finish(t testing.TB, ctx context.Context, l *ledger.Ledger) ledger.Report {
	t.Helper()
	if err := l.Wait(ctx); err != nil {
		t.Errorf("%v", err)
	}
	r := l.Report()
	r.Log(t)
	r.Assert(t)
	return r
}

// outputs returns n output ids named prefix0..prefix<n-1>.
func outputs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + fmt.Sprint(i)
	}
	return ids
}

// scenarioName is the accounting row name of t.
func scenarioName(t testing.TB) string {
	return strings.TrimPrefix(t.Name(), "Test")
}
