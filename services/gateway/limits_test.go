package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/framecast/framecast/shared/wire"
)

// refusal dials path with header and returns the refused upgrade's
// status, Retry-After and JSON error; a dial that is accepted fails the
// test.
func refusal(t *testing.T, base, path string, header http.Header) (int, string, errorBody) {
	t.Helper()
	c, resp, err := websocket.Dial(context.Background(), wsURL(base, path), &websocket.DialOptions{HTTPHeader: header})
	if err == nil {
		_ = c.CloseNow()
		t.Fatalf("dial %s: accepted; want a refusal", path)
	}
	if resp == nil {
		t.Fatalf("dial %s: %v; want an HTTP refusal", path, err)
	}
	// The websocket library keeps the first bytes of a refused
	// upgrade's body.
	return resp.StatusCode, resp.Header.Get("Retry-After"), decodeError(t, resp)
}

// TestConnectionLimits: past each connection bound, an upgrade is refused
// with its documented status, code and Retry-After, before the handshake;
// other clients are not affected; a connection that ends gives its place
// back.
func TestConnectionLimits(t *testing.T) {
	claimed := 0
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {"198.51.100.7, " + ip}} }
	bearer := func(t *testing.T, sub string) http.Header {
		tok := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
			"exp": time.Now().Add(time.Hour).Unix(), "sub": sub, "outputs": []string{"*"}})
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	tests := []struct {
		name   string
		cfg    func(*Config)
		path   string
		first  func(*testing.T) http.Header // the clients that fill the bound
		other  func(*testing.T) http.Header // a client the bound leaves alone; nil: none
		status int
		code   string
		retry  string
	}{
		{
			name: "per gateway", cfg: func(c *Config) { c.MaxConns = 2 }, path: "/v1/ws?output_id=o",
			first: func(*testing.T) http.Header { return nil }, status: 503, code: codeGatewayFull, retry: "1",
		},
		{
			name: "per client address behind a trusted proxy",
			cfg: func(c *Config) {
				c.MaxConnsPerIP = 2
				c.TrustedProxies = []string{"127.0.0.1", "::1"}
			},
			path:  "/comfyui-deploy/ws",
			first: func(*testing.T) http.Header { return xff("203.0.113.1") },
			other: func(*testing.T) http.Header { return xff("203.0.113.2") },
			// The proxy's own address would count every client as one.
			status: 429, code: codeIPConns, retry: "5",
		},
		{
			name: "per client address, X-Forwarded-For from an untrusted peer ignored",
			cfg:  func(c *Config) { c.MaxConnsPerIP = 2 },
			path: "/v1/ws?output_id=o",
			// Each connection claims another address: all are the peer's.
			first: func(*testing.T) http.Header {
				claimed++
				return xff(fmt.Sprintf("203.0.113.%d", claimed))
			},
			status: 429, code: codeIPConns, retry: "5",
		},
		{
			name: "per IPv6 /64 behind a trusted proxy",
			cfg: func(c *Config) {
				c.MaxConnsPerIP = 2
				c.TrustedProxies = []string{"127.0.0.1", "::1"}
			},
			path: "/v1/ws?output_id=o",
			// Each connection from another address of one /64.
			first: func(*testing.T) http.Header {
				claimed++
				return xff(fmt.Sprintf("2001:db8:0:7::%x", claimed))
			},
			other:  func(*testing.T) http.Header { return xff("2001:db8:0:8::1") },
			status: 429, code: codeIPConns, retry: "5",
		},
		{
			name: "per token subject",
			cfg: func(c *Config) {
				c.AllowAnonymous = false
				c.JWTSecret = testSecret
				c.MaxConnsPerSub = 2
			},
			path:   "/v1/ws?output_id=o",
			first:  func(t *testing.T) http.Header { return bearer(t, "alice") },
			other:  func(t *testing.T) http.Header { return bearer(t, "bob") },
			status: 429, code: codeSubConns, retry: "5",
		},
	}
	ns := testNATS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hs := testGateway(t, ns, tt.cfg)
			var held []*websocket.Conn
			for range 2 {
				c := dial(t, hs.URL, tt.path, &websocket.DialOptions{HTTPHeader: tt.first(t)})
				readMsg(t, c) // hello or status: the session runs
				held = append(held, c)
			}
			status, retry, body := refusal(t, hs.URL, tt.path, tt.first(t))
			if status != tt.status || body.Error.Code != tt.code || retry != tt.retry {
				t.Fatalf("third connection: got %d %q Retry-After %q (%s); want %d %q Retry-After %q",
					status, body.Error.Code, retry, body.Error.Message, tt.status, tt.code, tt.retry)
			}
			if got := metricValue(t, hs.URL, `framecast_gateway_upgrades_refused_total{code="`+tt.code+`"}`); got != 1 {
				t.Errorf("refusals counted: got %v; want 1", got)
			}
			if tt.other != nil {
				readMsg(t, dial(t, hs.URL, tt.path, &websocket.DialOptions{HTTPHeader: tt.other(t)}))
			}
			// A connection that ends gives its place back.
			want := srv.Connections() - 1
			_ = held[0].Close(websocket.StatusNormalClosure, "")
			waitFor(t, "connection ended", func() bool { return srv.Connections() == want })
			readMsg(t, dial(t, hs.URL, tt.path, &websocket.DialOptions{HTTPHeader: tt.first(t)}))
		})
	}
}

// TestResumeLimit: a client address holds at most MaxResumesPerIP
// connections that resume and have not caught up; past it a resume gets
// 429 ip_resume_limit, while a live-only connection is still accepted. A
// resume that has caught up (its live marker sent) no longer counts.
func TestResumeLimit(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, func(c *Config) {
		c.MaxResumesPerIP = 1
		c.WriteTimeout = time.Minute // the stalled resume is not cut meanwhile
	})
	p := newPublisher(t, ns)
	big := bytes.Repeat([]byte{5}, 6<<20) // more than the socket buffers hold
	seq := p.publish("o", "", big)

	// Not reading, the first resume cannot catch up.
	stalled := smallWindowDial(t, hs.URL, "/v1/ws?output_id=o&since=0")
	waitFor(t, "first resume's session", func() bool { return srv.Connections() == 1 })
	status, retry, body := refusal(t, hs.URL, "/v1/ws?output_id=o&last=1", nil)
	if status != 429 || body.Error.Code != codeIPResumes || retry != "1" {
		t.Fatalf("second resume: got %d %q Retry-After %q (%s); want 429 %q Retry-After 1", status, body.Error.Code, retry, body.Error.Message, codeIPResumes)
	}
	readControl(t, dial(t, hs.URL, "/v1/ws?output_id=o", nil), wire.TypeHello) // live only

	readControl(t, stalled, wire.TypeHello)
	if h := readFrames(t, stalled, 1)[0]; h.Seq != seq {
		t.Fatalf("resumed frame: got seq %d; want %d", h.Seq, seq)
	}
	readControl(t, stalled, wire.TypeLive)
	c := dial(t, hs.URL, "/v1/ws?output_id=o&since=0", nil)
	readControl(t, c, wire.TypeHello)
	if h := readFrames(t, c, 1)[0]; h.Seq != seq {
		t.Fatalf("resume after the first caught up: got seq %d; want %d", h.Seq, seq)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FuzzLimitKey: a client address (from X-Forwarded-For: outside input)
// counts as itself, as its IPv4 form, or as its IPv6 /64; every address of
// one /64 counts as one.
func FuzzLimitKey(f *testing.F) {
	for _, s := range []string{"203.0.113.1", "::ffff:203.0.113.1", "2001:db8::1", "fe80::1%eth0", "", "garbage", "1.2.3.4.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		key := limitKey(addr)
		ip, err := netip.ParseAddr(addr)
		switch {
		case err != nil:
			if key != addr {
				t.Fatalf("limitKey(%q) = %q; want it unchanged", addr, key)
			}
		case ip.Unmap().Is4():
			if key != ip.Unmap().String() {
				t.Fatalf("limitKey(%q) = %q; want %q", addr, key, ip.Unmap())
			}
		default:
			p, err := netip.ParsePrefix(key)
			if err != nil || p.Bits() != 64 || !p.Contains(ip.WithZone("")) {
				t.Fatalf("limitKey(%q) = %q; want the /64 holding it", addr, key)
			}
			if other := limitKey(p.Addr().Next().String()); other != key {
				t.Fatalf("limitKey of another address of %s = %q; want %q", key, other, key)
			}
		}
	})
}
