package devstack

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/wire"
)

func start(t *testing.T) *Stack {
	t.Helper()
	st, err := Start(t.Context(), Config{Addr: "127.0.0.1:0", NATSPort: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRoutes(t *testing.T) {
	st := start(t)
	defer st.Shutdown(context.Background())
	base := "http://" + st.Addr().String()

	resp, err := http.Post(base+"/v1/outputs/demo/images?width=2&height=2&channels=3&dtype=uint8&file_type=png",
		"application/octet-stream", bytes.NewReader(make([]byte, 12)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"seq":1`) {
		t.Fatalf("publish got %s %s; want 200 with seq 1", resp.Status, b)
	}
	resp, err = http.Post(base+"/v1/events?client_id=me", "application/json", strings.NewReader(`{"event":"status","data":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"client_id":"me","event":"status","seq":2}`; resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != want {
		t.Fatalf("event got %s %s; want 200 %s", resp.Status, b, want)
	}

	tests := []struct {
		path, want string
	}{
		{"/healthz", "ok"},
		{"/readyz", ""},
		{"/framecast.js", "export"},
		{"/", "<"},
		{"/metrics", "framecast_producer_"},
		{"/metrics", "framecast_gateway_"},
		{"/metrics", "go_goroutines"},
		{"/metrics", "process_resident_memory_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.want, func(t *testing.T) {
			resp, err := http.Get(base + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), tt.want) {
				t.Fatalf("got %s with %d bytes; want 200 containing %q", resp.Status, len(b), tt.want)
			}
		})
	}
}

func TestShutdownDrainsSockets(t *testing.T) {
	st := start(t)
	c, err := client.Dial(t.Context(), client.Config{URL: "http://" + st.Addr().String(), OutputID: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := m.(*client.Control); !ok || h.Type != wire.TypeHello {
		t.Fatalf("got %+v; want hello", m)
	}
	done := make(chan error, 1)
	go func() { done <- st.Shutdown(context.Background()) }()
	for {
		_, err = c.Next(t.Context())
		if err != nil {
			break
		}
	}
	if got := websocket.CloseStatus(err); got != wire.CloseGoingAway {
		t.Errorf("close status got %d (%v); want %d", got, err, wire.CloseGoingAway)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-st.Done(); err != http.ErrServerClosed {
		t.Fatalf("serve ended with %v; want http.ErrServerClosed", err)
	}
}

func TestStartRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nats port", Config{Addr: "127.0.0.1:0", NATSPort: -5}, "allowed: -1 (any free port)"},
		{"addr", Config{Addr: "127.0.0.1:99999", NATSPort: -1}, "listen on 127.0.0.1:99999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.StoreDir = t.TempDir()
			_, err := Start(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDevOrigins: by default a browser app on a localhost dev server (any
// port) may connect; another site may not.
func TestDevOrigins(t *testing.T) {
	st := start(t)
	defer st.Shutdown(context.Background())
	url := "ws://" + st.Addr().String() + "/comfyui-deploy/ws?clientId=app"
	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"http://localhost:3000", true},
		{"http://127.0.0.1:5173", true},
		{"http://[::1]:3000", true},
		{"http://localhost", true},
		{"https://evil.example.com", false},
		{"http://localhost.evil.example.com:3000", false},
	} {
		t.Run(tt.origin, func(t *testing.T) {
			h := http.Header{"Origin": {tt.origin}}
			c, resp, err := websocket.Dial(t.Context(), url, &websocket.DialOptions{HTTPHeader: h})
			if tt.ok {
				if err != nil {
					t.Fatalf("got %v; want the socket accepted", err)
				}
				c.CloseNow()
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatal("got the socket accepted; want 403")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("got %v; want 403", err)
			}
		})
	}
}
