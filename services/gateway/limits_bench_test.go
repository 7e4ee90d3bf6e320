package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coder/websocket"
)

// BenchmarkUpgradeLimits is the cost of the connection limits on a
// connect: each op dials a native websocket, reads its hello and closes
// it, on a gateway without bounds and on one counting every bound (the
// client address taken from X-Forwarded-For through a trusted proxy).
// The difference is the limits' cost, measured in the same run.
func BenchmarkUpgradeLimits(b *testing.B) {
	ns := testNATS(b)
	tests := []struct {
		name string
		cfg  func(*Config)
	}{
		{"none", func(c *Config) { c.MaxConns, c.MaxConnsPerSub = -1, -1 }},
		{"all", func(c *Config) {
			c.MaxConns, c.MaxConnsPerIP, c.MaxConnsPerSub, c.MaxResumesPerIP = 1<<20, 1<<20, 1<<20, 1<<20
			c.TrustedProxies = []string{"127.0.0.1", "::1"}
		}},
	}
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"203.0.113.9"}}}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			_, hs := testGateway(b, ns, tt.cfg)
			url := wsURL(hs.URL, "/v1/ws?output_id=bench")
			ctx := context.Background()
			for b.Loop() {
				c, _, err := websocket.Dial(ctx, url, opts)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
				_ = c.CloseNow()
			}
		})
	}
}

// BenchmarkLimitsAcquire is what the limits add to one upgrade, alone:
// finding the client address through a trusted proxy's X-Forwarded-For,
// then acquire and release with every bound counted.
func BenchmarkLimitsAcquire(b *testing.B) {
	ips, err := newClientIPs([]string{"10.0.0.0/8"})
	if err != nil {
		b.Fatal(err)
	}
	l := newLimits(Config{MaxConns: 1 << 20, MaxConnsPerIP: 1 << 20, MaxConnsPerSub: 1 << 20, MaxResumesPerIP: 1 << 20})
	r := httptest.NewRequest("GET", "/v1/ws?output_id=o", nil)
	r.RemoteAddr = "10.1.2.3:40000"
	r.Header.Set("X-Forwarded-For", "198.51.100.7, 203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		ls, herr := l.acquire(ips.of(r), "alice", true)
		if herr != nil {
			b.Fatal(herr)
		}
		ls.endResume()
		ls.release()
	}
}
