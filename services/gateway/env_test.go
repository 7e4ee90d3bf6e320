package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/natsembed"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/wire"
)

// testNATS starts an embedded NATS server for one test, with testStream
// ensured on it.
func testNATS(t testing.TB) *server.Server {
	t.Helper()
	ns := bareNATS(t)
	ensureStream(t, ns, testStream)
	return ns
}

// bareNATS starts an embedded NATS server for one test, without a stream.
func bareNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// ensureStream creates or updates the stream c on ns, as the deployment's
// ensure step does (the gateway only verifies it).
func ensureStream(t testing.TB, ns *server.Server, c stream.Config) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, c); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
}

var testStream = stream.Config{Memory: true}

// testLogger discards the gateway's log, unless FRAMECAST_TEST_LOG is set
// (then it goes to standard error at debug level).
func testLogger() *slog.Logger {
	if os.Getenv("FRAMECAST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testGateway runs a gateway on ns behind an httptest server.
func testGateway(t testing.TB, ns *server.Server, edit func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	cfg := Config{
		NATSURL:        ns.ClientURL(),
		Stream:         testStream,
		ID:             "gw-test",
		AllowAnonymous: true,
		Logger:         testLogger(),
	}
	if edit != nil {
		edit(&cfg)
	}
	ensureStream(t, ns, cfg.Stream)
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		_ = srv.Close()
	})
	waitReady(t, hs.URL)
	return srv, hs
}

func waitReady(t testing.TB, base string) {
	t.Helper()
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if i > 500 {
			t.Fatalf("gateway never ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publisher publishes frames the way the producer does.
type publisher struct {
	t  testing.TB
	nc *nats.Conn
	js jetstream.JetStream
}

func newPublisher(t testing.TB, ns *server.Server) *publisher {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	if _, err := stream.Ensure(context.Background(), js, testStream); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	return &publisher{t: t, nc: nc, js: js}
}

// publish stores one WEBP frame for (oid, cid) and returns its sequence.
func (p *publisher) publish(oid, cid string, img []byte) uint64 {
	p.t.Helper()
	seq, err := p.tryPublish(oid, cid, img)
	if err != nil {
		p.t.Fatalf("publish: %v", err)
	}
	return seq
}

func (p *publisher) tryPublish(oid, cid string, img []byte) (uint64, error) {
	m := frame.Meta{OutputID: oid, ClientID: cid, Format: frame.WEBP, Width: 4, Height: 3,
		BatchIndex: 0, BatchSize: 1, Timestamp: time.Now().UnixMilli()}
	msg := nats.NewMsg(m.Subject())
	m.Header(msg.Header)
	msg.Data = img
	ack, err := p.js.PublishMsg(context.Background(), msg)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func wsURL(base, pathQuery string) string {
	return "ws" + strings.TrimPrefix(base, "http") + pathQuery
}

func dial(t testing.TB, base, pathQuery string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(context.Background(), wsURL(base, pathQuery), opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", pathQuery, err, status)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// msg is one received websocket message, decoded.
type msg struct {
	ctl   *wire.Control
	hdr   wire.Header
	image []byte
	raw   []byte
	text  bool
}

func readMsg(t testing.TB, c *websocket.Conn) msg {
	t.Helper()
	m, err := tryRead(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func tryRead(c *websocket.Conn) (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return msg{}, err
	}
	if typ == websocket.MessageText {
		ctl, err := wire.DecodeControl(b)
		if err != nil {
			return msg{raw: b, text: true}, nil
		}
		return msg{ctl: &ctl, raw: b, text: true}, nil
	}
	h, img, err := wire.DecodeNative(b)
	if err != nil {
		return msg{raw: b}, nil
	}
	return msg{hdr: h, image: img, raw: b}, nil
}

// readControl reads one message and checks it is a control of type typ.
func readControl(t testing.TB, c *websocket.Conn, typ string) wire.Control {
	t.Helper()
	m := readMsg(t, c)
	if m.ctl == nil || m.ctl.Type != typ {
		t.Fatalf("got message %q; want a %s control", m.raw, typ)
	}
	return *m.ctl
}

// readFrames reads n native frames, skipping nothing: a control message
// fails the test.
func readFrames(t testing.TB, c *websocket.Conn, n int) []wire.Header {
	t.Helper()
	hs := make([]wire.Header, 0, n)
	for len(hs) < n {
		m := readMsg(t, c)
		if m.text {
			t.Fatalf("got control %s after %d frames; want %d frames", m.raw, len(hs), n)
		}
		hs = append(hs, m.hdr)
	}
	return hs
}

func closeStatus(err error) websocket.StatusCode { return websocket.CloseStatus(err) }

func img(i int) []byte { return []byte(fmt.Sprintf("image-%06d", i)) }

func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("get %s: %v", url, err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

type testConn struct {
	*websocket.Conn
	cid string
}

func testStreamName() string {
	c, _ := testStream.WithDefaults()
	return c.Name
}

func runtimeGosched() { time.Sleep(time.Millisecond) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHTTPTest(t testing.TB, srv *Server) *httptest.Server {
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

// metricValue reads one sample from /metrics; 0 when absent.
func metricValue(t testing.TB, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}
