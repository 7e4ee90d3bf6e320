package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/wire"
)

// serveHTTP runs h on srv.HTTPServer, as cmd/gateway does.
func serveHTTP(t *testing.T, srv *Server, h http.Handler) *httptest.Server {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = srv.HTTPServer("", h)
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
	})
	return hs
}

// TestAdminListener: with SeparateAdmin, /metrics is served by the admin
// handler only; health and readiness by both.
func TestAdminListener(t *testing.T) {
	ns := testNATS(t)
	tests := []struct {
		name          string
		separate      bool
		clientMetrics int
	}{
		{"one listener", false, 200},
		{"separate admin listener", true, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hs := testGateway(t, ns, func(c *Config) { c.SeparateAdmin = tt.separate })
			admin := serveHTTP(t, srv, srv.AdminHandler())
			for _, c := range []struct {
				base, path string
				want       int
			}{
				{hs.URL, "/metrics", tt.clientMetrics},
				{hs.URL, "/healthz", 200},
				{hs.URL, "/readyz", 200},
				{admin.URL, "/metrics", 200},
				{admin.URL, "/healthz", 200},
				{admin.URL, "/readyz", 200},
				{admin.URL, "/v1/ws?output_id=o", 404},
			} {
				resp, err := http.Get(c.base + c.path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.want {
					t.Errorf("%s on %s: got %d; want %d", c.path, c.base, resp.StatusCode, c.want)
				}
				if c.path == "/metrics" && c.want == 200 && !strings.Contains(string(b), "framecast_gateway_subscriptions") {
					t.Errorf("%s on %s: no gateway metrics in %.200q", c.path, c.base, b)
				}
			}
		})
	}
}

// TestHTTPTimeouts: HTTPServer closes a keep-alive connection left idle
// and one that sends its headers too slowly, while a websocket stays open
// well past both timeouts and still receives frames.
func TestHTTPTimeouts(t *testing.T) {
	ns := testNATS(t)
	srv, _ := testGateway(t, ns, func(c *Config) {
		c.HTTPReadTimeout = 200 * time.Millisecond
		c.HTTPIdleTimeout = 200 * time.Millisecond
	})
	hs := serveHTTP(t, srv, srv.Handler())
	addr := strings.TrimPrefix(hs.URL, "http://")

	t.Run("idle keep-alive closed", func(t *testing.T) {
		conn, br := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("got %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
		expectClosed(t, conn, br)
	})
	t.Run("slow headers closed", func(t *testing.T) {
		conn, br := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\n") // no blank line: headers unfinished
		expectClosed(t, conn, br)
	})
	t.Run("websocket outlives them", func(t *testing.T) {
		p := newPublisher(t, ns)
		c := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
		readControl(t, c, wire.TypeHello)
		time.Sleep(time.Second) // five times either timeout
		seq := p.publish("o", "", img(1))
		if h := readFrames(t, c, 1)[0]; h.Seq != seq {
			t.Fatalf("got seq %d; want %d", h.Seq, seq)
		}
	})
}

// rawRequest sends text on a new TCP connection to addr.
func rawRequest(t *testing.T, addr, text string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// expectClosed reads conn until the server closes it (what it sends
// before, such as a 408, is ignored), failing after 10 s.
func expectClosed(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection still open after 10s; want it closed by the server")
	}
}
