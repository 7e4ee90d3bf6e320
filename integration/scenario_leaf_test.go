package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/frame"
)

// leafInlineLimit is the GPU hosts' producers' --inline-limit: the large
// frames of the leaf scenarios (96x96 of noise, about 27 KiB) cross the
// leaf by reference, through the OUTPUTS_LARGE bucket.
const leafInlineLimit = 16 << 10

// leafTopology is the deployment of docs/deploy.md's "Many GPU hosts",
// run from the shipped deploy/nats files: a hub of three servers
// (nats.conf, accounts.conf), GPU hosts each with a leaf node (leaf.conf)
// and a producer that connects only to it, and gateways on the hub.
type leafTopology struct {
	env      *topo.Env
	hub      *topo.NATS
	hosts    []*gpuHost
	gateways []*topo.Service
}

// gpuHost is one GPU host: its leaf node reaches every hub server through
// a link of its own (a proxy the test cuts, the host's WAN).
type gpuHost struct {
	name     string
	leaf     *topo.NATSNode
	links    []*topo.Proxy
	producer *topo.Service
}

// cut severs the host's WAN: every link to the hub closes and refuses
// new connections.
func (h *gpuHost) cut() {
	for _, l := range h.links {
		l.Cut()
	}
}

// blackhole silences the host's WAN: the open links forward nothing and
// never close, as when a WAN drops packets; new ones are refused.
func (h *gpuHost) blackhole() {
	for _, l := range h.links {
		l.Blackhole()
	}
}

// restore lets the host's leaf reach the hub again.
func (h *gpuHost) restore() {
	for _, l := range h.links {
		l.Restore()
	}
}

// leafOptions shape a leafTopology.
type leafOptions struct {
	hosts    []string // the GPU hosts' names
	gateways int
	producer []string // extra flags of the hosts' producers
	// direct links the leafs to the hub without proxies: no cuts, and no
	// proxy's copy in the path (for latency figures).
	direct bool
}

// newLeafTopology starts the hub, creates the stream as the deployment's
// one-shot ensure step does, then starts the gateways and the GPU hosts.
func newLeafTopology(t testing.TB, o leafOptions) *leafTopology {
	t.Helper()
	_, natsEnv := deployedAccounts(t)
	env := topo.NewEnv(t, bins)
	lt := &leafTopology{env: env, hub: env.StartHub(topo.HubOptions{
		Env: natsEnv, User: "admin", Password: natsPasswords["admin"],
	})}
	streamFlag := fmt.Sprintf("--stream-replicas=%d", len(lt.hub.Nodes))
	lt.hub.EnsureStream([]string{streamFlag})
	for i := range o.gateways {
		lt.gateways = append(lt.gateways, env.StartGateway(fmt.Sprintf("gw%d", i),
			lt.hub.URLWithUser("gateway", natsPasswords["gateway"]), "--allow-anonymous", streamFlag))
	}
	for _, name := range o.hosts {
		h := &gpuHost{name: name}
		var urls []string
		for _, u := range lt.hub.LeafURLs("leaf", natsPasswords["leaf"]) {
			if o.direct {
				urls = append(urls, u)
				continue
			}
			// nats-leaf://leaf:pass@127.0.0.1:port: the host's link to
			// that hub server goes through its own proxy.
			creds, addr, _ := strings.Cut(strings.TrimPrefix(u, "nats-leaf://"), "@")
			p := env.StartProxy(addr)
			h.links = append(h.links, p)
			urls = append(urls, "nats-leaf://"+creds+"@"+p.Addr())
		}
		h.leaf = env.StartLeaf(topo.LeafOptions{Name: name, HubURLs: urls, ProducerPassword: natsPasswords["producer"]})
		h.producer = env.StartProducer("producer-"+name, h.leaf.URLWithUser("producer", natsPasswords["producer"]),
			append([]string{streamFlag}, o.producer...)...)
		lt.hosts = append(lt.hosts, h)
	}
	return lt
}

// gatewayURLs lists the gateways' base URLs starting at index first.
func (lt *leafTopology) gatewayURLs(first int) []string { return gatewayURLs(lt.gateways, first) }

// answerLog keeps every HTTP answer one host's producer gave, with the
// time its request was sent and when the answer came. Its methods are safe
// for concurrent use.
type answerLog struct {
	mu      sync.Mutex
	answers []answer
}

type answer struct {
	sent, got  time.Time
	status     int
	retryAfter string
	large      bool // a frame above the inline limit
}

func (a *answerLog) record(sent time.Time, resp *http.Response) {
	x := answer{sent: sent, got: time.Now(), status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"),
		large: resp.Request.ContentLength > leafInlineLimit}
	a.mu.Lock()
	a.answers = append(a.answers, x)
	a.mu.Unlock()
}

// within returns the answers to requests sent at or after from and
// answered before to.
func (a *answerLog) within(from, to time.Time) []answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	var in []answer
	for _, x := range a.answers {
		if !x.sent.Before(from) && x.got.Before(to) {
			in = append(in, x)
		}
	}
	return in
}

// sentWithin is the answers to the publishes sent in [from, to), whenever
// they were answered.
func (a *answerLog) sentWithin(from, to time.Time) []answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	var in []answer
	for _, x := range a.answers {
		if !x.sent.Before(from) && x.sent.Before(to) {
			in = append(in, x)
		}
	}
	return in
}

// statuses counts the answers by status.
func (a *answerLog) statuses() map[int]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[int]int{}
	for _, x := range a.answers {
		m[x.status]++
	}
	return m
}

// hostLoad is one host's publishers: small frames inline and large ones
// by reference, each retried with its Idempotency-Key until 200.
type hostLoad struct {
	host         *gpuHost
	small, large *publisher
	answers      answerLog
}

// newHostLoad returns the publishers of host h. Frame ids (and so the
// Idempotency-Keys, which share the stream's duplicate window) start at
// base: every publisher of a scenario needs its own range.
func newHostLoad(h *gpuHost, l *ledger.Ledger, base uint64) *hostLoad {
	hl := &hostLoad{host: h, small: newPublisher(h.producer.URL, l), large: newPublisher(h.producer.URL, l)}
	hl.small.next.Store(base)
	hl.large.next.Store(base + 1<<20)
	hl.large.width, hl.large.height = 96, 96
	for _, p := range []*publisher{hl.small, hl.large} {
		p.answered = hl.answers.record
	}
	return hl
}

// run publishes until ctx ends: two small-frame publishers at 10 frames/s
// each and one large-frame publisher at 2 frames/s, over targets.
func (hl *hostLoad) run(ctx context.Context, wg *sync.WaitGroup, targets [][2]string) {
	for i, p := range []*publisher{hl.small, hl.small, hl.large} {
		rate := 10
		if p == hl.large {
			rate = 2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each publisher starts at another target.
			rotated := make([][2]string, 0, len(targets))
			rotated = append(append(rotated, targets[i%len(targets):]...), targets[:i%len(targets)]...)
			p.steady(ctx, rate, true, rotated)
		}()
	}
}

// transportErrors is how many attempts got no HTTP answer.
func (hl *hostLoad) transportErrors() int {
	n := 0
	for _, p := range []*publisher{hl.small, hl.large} {
		p.mu.Lock()
		n += p.errs
		p.mu.Unlock()
	}
	return n
}

// okAnswers is how many requests were answered 200 (one frame each).
func (hl *hostLoad) okAnswers() int { return hl.answers.statuses()[http.StatusOK] }

// waitOK waits until the host's producer has answered 200 at least n
// times.
func (hl *hostLoad) waitOK(t testing.TB, ctx context.Context, n int) {
	t.Helper()
	for hl.okAnswers() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: frames acknowledged: got %d; want %d: %v", hl.host.name, hl.okAnswers(), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestLeafWANCut runs two GPU hosts, each a leaf node of the hub with its
// own producer, and clients of two gateways watching outputs published
// from one host and from both. One host's WAN is cut for 10 s while its
// producer keeps being called: every publish sent during the cut is
// answered 503 with Retry-After, the retries with the same
// Idempotency-Key store each frame once when the link returns, large
// frames (by reference, through the bucket) included, and the other host
// publishes throughout with 200s only. Every acknowledged frame reaches
// every client that wants it once and in order.
func TestLeafWANCut(t *testing.T) { leafCut(t, (*gpuHost).cut) }

// TestLeafWANSilentCut is TestLeafWANCut with a WAN that goes silent
// instead of closing the links: the leaf's link to the hub stays open and
// dead, and only the leaf's pings (leaf.conf's ping_interval) can find
// out. Publishes sent into the dead link get no acknowledgement and are
// answered 503 when the producer's publish timeout ends; some of them may
// be stored when they did reach the hub, and their retries must not store
// them again. The host publishes again within a minute of the restore,
// long before the default ping interval (2 minutes) would notice.
func TestLeafWANSilentCut(t *testing.T) { leafCut(t, (*gpuHost).blackhole) }

// leafCut is the WAN cut scenario, the host's links severed by sever.
func leafCut(t *testing.T, sever func(*gpuHost)) {
	const cutFor, relink = 10 * time.Second, time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lt := newLeafTopology(t, leafOptions{hosts: []string{"gpu-a", "gpu-b"}, gateways: 2,
		producer: []string{fmt.Sprintf("--inline-limit=%d", leafInlineLimit)}})
	a, b := lt.hosts[0], lt.hosts[1]
	l := ledger.New(scenarioName(t))

	// Clients: output "a" is published from host A only, "b" from host
	// B only, "ab" from both; each is watched through both gateways, live
	// and from the start, some clients also receiving frames sent to them.
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i, oid := range []string{"a", "b", "ab", "a", "b", "ab"} {
		cfg := client.Config{OutputID: oid, ClientID: fmt.Sprintf("c%d", i%2), Since: u64(0)}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("client%d-%s", i, oid), lt.gatewayURLs(i%2), cfg))
	}
	waitHello(t, ctx, ws)

	loadA, loadB := newHostLoad(a, l, 0), newHostLoad(b, l, 1<<40)
	pctx, pcancel := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	loadA.run(pctx, &pwg, [][2]string{{"a", ""}, {"ab", ""}, {"a", "c0"}})
	loadB.run(pctx, &pwg, [][2]string{{"b", ""}, {"ab", ""}, {"b", "c1"}})
	loadA.waitOK(t, ctx, 60)
	loadB.waitOK(t, ctx, 60)

	okA, okB := loadA.okAnswers(), loadB.okAnswers()
	sever(a)
	cutAt := time.Now()
	t.Logf("WAN of %s cut at %d+%d acknowledged frames", a.name, okA, okB)
	// The producer keeps its own connection, to the leaf, and answers
	// 503.
	time.Sleep(cutFor)
	restoreAt := time.Now()
	duringB := loadB.okAnswers() - okB
	a.restore()
	t.Logf("WAN of %s restored after %v; %s acknowledged %d frames meanwhile", a.name, restoreAt.Sub(cutAt).Round(time.Millisecond), b.name, duringB)
	ctxLink, cancelLink := context.WithTimeout(ctx, relink)
	if err := a.leaf.WaitLinked(ctxLink, "producer", natsPasswords["producer"]); err != nil {
		t.Fatalf("%s not linked to the hub again %v after the restore: %v", a.name, relink, err)
	}
	cancelLink()
	loadA.waitOK(t, ctx, loadA.okAnswers()+60)
	// Requests still in flight are abandoned by the cancel: counted
	// before it.
	transportErrors := loadA.transportErrors() + loadB.transportErrors()
	pcancel()
	pwg.Wait()

	// A silent WAN answers a publish only when the producer's publish
	// timeout ends, so a publish sent late in the cut may be answered
	// after the restore (and then may be stored): the publishers kept
	// being called if publishes were sent during the cut; those answered
	// before the restore must all be 503.
	sent := loadA.answers.sentWithin(cutAt, restoreAt)
	if len(sent) < 3 {
		t.Errorf("%s: %d publishes sent during the cut; want one for each of its 3 publishers at least (the producer kept being called)", a.name, len(sent))
	}
	largeDuring := 0
	for _, x := range sent {
		if x.large {
			largeDuring++
		}
	}
	during := loadA.answers.within(cutAt, restoreAt)
	for _, x := range during {
		if x.status != http.StatusServiceUnavailable || x.retryAfter == "" {
			t.Errorf("%s: publish sent %v into the cut: got %d with Retry-After %q; want 503 with Retry-After",
				a.name, x.sent.Sub(cutAt).Round(time.Millisecond), x.status, x.retryAfter)
		}
	}
	if largeDuring == 0 {
		t.Errorf("%s: no large frame was sent during the cut; want some, retried after it", a.name)
	}
	if transportErrors != 0 {
		t.Errorf("%d publishes got no HTTP answer; want an answer to each", transportErrors)
	}
	// The other host is not touched by the cut: 200 to every publish, and
	// it kept publishing while the link was down.
	for code, n := range loadB.answers.statuses() {
		if code != http.StatusOK {
			t.Errorf("%s answered %d %d times; want only 200", b.name, code, n)
		}
	}
	if duringB < 20 {
		t.Errorf("%s acknowledged %d frames during the cut; want it to keep publishing (at least 20)", b.name, duringB)
	}
	t.Logf("%s answers %v; %d publishes sent during the cut (%d of large frames), %d answered before the restore; %s answers %v",
		a.name, loadA.answers.statuses(), len(sent), largeDuring, len(during), b.name, loadB.answers.statuses())

	r := finish(t, ctx, l)
	if r.Gapped != 0 {
		t.Errorf("%d frames reported as gaps; every frame is inside the window", r.Gapped)
	}
	stopWatchers(t, wcancel, ws)
	js, err := jetstream.New(lt.hub.Connect())
	if err != nil {
		t.Fatal(err)
	}
	large := checkKeysStoredOnce(t, ctx, js, l.Acked())
	if large == 0 {
		t.Errorf("no frame stored by reference; want the large frames through the bucket")
	}
}

// checkKeysStoredOnce reads every message of the stream and fails if two
// carry the same Nats-Msg-Id (the producer derives it from the
// Idempotency-Key, so a retry stored twice would show) or if the stream
// holds fewer frames than were acknowledged. It may hold more: a request
// abandoned when the publishers stop can be stored without its 200. It
// returns how many frames are stored by reference to the bucket.
func checkKeysStoredOnce(t *testing.T, ctx context.Context, js jetstream.JetStream, acked int) (byReference int) {
	t.Helper()
	seen := map[string]uint64{} // Nats-Msg-Id -> seq
	walkStream(t, ctx, js, func(seq uint64, m *jetstream.RawStreamMsg) {
		id := m.Header.Get(nats.MsgIdHdr)
		if id == "" {
			t.Errorf("stored seq %d has no %s", seq, nats.MsgIdHdr)
			return
		}
		if prev, ok := seen[id]; ok {
			t.Errorf("%s %q stored twice: seq %d and %d", nats.MsgIdHdr, id, prev, seq)
		}
		seen[id] = seq
		if m.Header.Get(frame.HeaderObject) != "" {
			byReference++
		}
	})
	if len(seen) < acked {
		t.Errorf("stream holds %d frames; want the %d acknowledged at least", len(seen), acked)
	}
	t.Logf("stream holds %d frames (%d acknowledged), each key once, %d by reference", len(seen), acked, byReference)
	return byReference
}
