package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestGatewayProcessLimits: the gateway binary started with --admin-addr
// serves /metrics there and not on its client port, and with
// --max-conns-per-ip refuses a client address's connection past the bound
// with 429 ip_connection_limit and Retry-After, before the upgrade, and
// takes it once a connection has ended.
func TestGatewayProcessLimits(t *testing.T) {
	s := newStack(t, stackOptions{})
	admin := fmt.Sprintf("http://127.0.0.1:%d", s.env.Ports(1)[0])
	gw := s.env.StartGateway("gw-limits", s.nats.URL(), "--allow-anonymous",
		"--admin-addr="+admin[len("http://"):], "--max-conns-per-ip=2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, c := range []struct {
		base, path string
		want       int
	}{
		{gw.URL, "/metrics", http.StatusNotFound},
		{gw.URL, "/readyz", http.StatusOK},
		{admin, "/metrics", http.StatusOK},
		{admin, "/readyz", http.StatusOK},
	} {
		resp, err := http.Get(c.base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s%s: got %d; want %d", c.base, c.path, resp.StatusCode, c.want)
		}
	}

	ws := "ws" + gw.URL[len("http"):] + "/v1/ws?output_id=limits"
	var held []*websocket.Conn
	for range 2 {
		c, _, err := websocket.Dial(ctx, ws, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if _, _, err := c.Read(ctx); err != nil { // the hello
			t.Fatalf("hello: %v", err)
		}
		held = append(held, c)
	}
	_, resp, err := websocket.Dial(ctx, ws, nil)
	if err == nil || resp == nil {
		t.Fatalf("third connection: got %v; want a refusal", err)
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusTooManyRequests || body.Error.Code != "ip_connection_limit" || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("third connection: got %d %q Retry-After %q; want 429 ip_connection_limit Retry-After 5",
			resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After"))
	}
	if v, ok := metric(ctx, admin, `framecast_gateway_upgrades_refused_total{code="ip_connection_limit"}`); !ok || v != 1 {
		t.Errorf("refusals on the admin listener: got %v (%v); want 1", v, ok)
	}

	_ = held[0].Close(websocket.StatusNormalClosure, "")
	for {
		c, _, err := websocket.Dial(ctx, ws, nil)
		if err == nil {
			c.CloseNow()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("a place was not given back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
