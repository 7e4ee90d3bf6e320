package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// gateway is a real websocket server speaking the gateway's protocols. Each
// accepted connection runs script with its 0-based connection number; when
// script returns without closing, the server waits for the client to close.
type gateway struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

type script func(n int, ws *websocket.Conn, r *http.Request)

func newGateway(t *testing.T, s script) *gateway {
	t.Helper()
	g := &gateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		n := len(g.requests)
		g.requests = append(g.requests, r)
		g.mu.Unlock()
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		s(n, ws, r)
		for {
			if _, _, err := ws.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	t.Cleanup(g.Close)
	return g
}

// request returns the n-th handshake request the server saw.
func (g *gateway) request(t *testing.T, n int) *http.Request {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if n >= len(g.requests) {
		t.Fatalf("got %d requests; want more than %d", len(g.requests), n)
	}
	return g.requests[n]
}

func send(t *testing.T, ws *websocket.Conn, typ websocket.MessageType, b []byte) {
	t.Helper()
	if err := ws.Write(context.Background(), typ, b); err != nil {
		t.Errorf("server write: %v", err)
	}
}

func sendControl(t *testing.T, ws *websocket.Conn, c wire.Control) {
	t.Helper()
	send(t, ws, websocket.MessageText, wire.EncodeControl(c))
}

func sendFrame(t *testing.T, ws *websocket.Conn, seq uint64) {
	t.Helper()
	send(t, ws, websocket.MessageBinary, nativeFrame(seq))
}

func nativeFrame(seq uint64) []byte {
	h := wire.HeaderOf(seq, frame.Meta{OutputID: "demo", ClientID: "c1", Format: frame.WEBP, Width: 4, Height: 3, BatchIndex: 0, BatchSize: 1, Timestamp: 1700000000000})
	return wire.EncodeNative(h, []byte("img-"+itoa(seq)))
}

func sendComfy(t *testing.T, ws *websocket.Conn, oid string, img string) {
	t.Helper()
	b, err := wire.EncodeComfy(oid, frame.PNG, []byte(img))
	if err != nil {
		t.Fatal(err)
	}
	send(t, ws, websocket.MessageBinary, b)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func u64(n uint64) *uint64 { return &n }

// checkGoroutines fails t when the goroutine count does not come back to
// before. Exiting goroutines need a moment to be counted out; the wait only
// bounds how long a failure takes to report.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Errorf("got %d goroutines; want at most %d:\n%s", runtime.NumGoroutine(), before, buf)
}

func contains(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v; want one containing %q", err, want)
	}
}

func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
