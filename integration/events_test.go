package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/wire"
)

// post sends body to the producer at u and returns the 200 answer's body.
func post(t *testing.T, ctx context.Context, u, contentType string, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: got HTTP %d %s; want 200", u, res.StatusCode, b)
	}
	return b
}

// postFrame publishes a 2x2 RGB frame of output o for client cid ("" =
// every client) through the producer and returns its seq.
func postFrame(t *testing.T, ctx context.Context, producer, cid string) uint64 {
	t.Helper()
	u := producer + "/v1/outputs/o/images?file_type=png&width=2&height=2&channels=3&dtype=uint8"
	if cid != "" {
		u += "&client_id=" + cid
	}
	var r struct {
		Frames []struct {
			Seq uint64 `json:"seq"`
		} `json:"frames"`
	}
	b := post(t, ctx, u, "application/octet-stream", make([]byte, 2*2*3))
	if err := json.Unmarshal(b, &r); err != nil || len(r.Frames) != 1 {
		t.Fatalf("producer answer %s: want one frame (%v)", b, err)
	}
	return r.Frames[0].Seq
}

// postEvent publishes an event through the producer's POST /v1/events for
// client cid ("" = every client) and returns its seq.
func postEvent(t *testing.T, ctx context.Context, producer, cid, body string) uint64 {
	t.Helper()
	u := producer + "/v1/events"
	if cid != "" {
		u += "?client_id=" + cid
	}
	var r struct {
		Seq uint64 `json:"seq"`
	}
	b := post(t, ctx, u, "application/json", []byte(body))
	if err := json.Unmarshal(b, &r); err != nil || r.Seq == 0 {
		t.Fatalf("producer answer %s: want a seq (%v)", b, err)
	}
	return r.Seq
}

// line describes a message a Stream handed on.
func line(m client.Message) string {
	switch m := m.(type) {
	case *client.Frame:
		return fmt.Sprintf("frame %d", m.Seq)
	case *client.Control:
		switch m.Type {
		case wire.TypeHello:
			return fmt.Sprintf("hello since %d", *m.Since)
		case wire.TypeEvent:
			return fmt.Sprintf("event %d %s %s", *m.Seq, m.Event, m.Data)
		}
		return m.Type
	}
	return fmt.Sprintf("%T", m)
}

// TestEventsOnResume: with real nats-server, producer and gateway
// processes, an event broadcast through the producer's POST /v1/events
// while a native client (a Go client Stream) is cut off from its gateway
// comes on its resume, in sequence order with the frames around it, none
// twice and none of another client; a ComfyDeploy socket connected
// meanwhile gets the same event as the very text the producer took.
func TestEventsOnResume(t *testing.T) {
	s := newStack(t, stackOptions{})
	producer, gw := s.producer.URL, s.gateways[0]
	proxy := s.env.StartProxy(strings.TrimPrefix(gw.URL, "http://"))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	lines := make(chan string, 64)
	disconnected := make(chan struct{}, 1)
	st, err := client.NewStream(client.StreamConfig{
		Config: client.Config{OutputID: "o", ClientID: "c"},
		URLs:   []string{"http://" + proxy.Addr()},
		// Short waits: the test restores the path and waits for the resume.
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnDisconnect: func(string, error, time.Duration) {
			select {
			case disconnected <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- st.Run(runCtx, func(_ context.Context, m client.Message) error {
			if l := line(m); l != wire.TypeLive {
				lines <- l
			}
			return nil
		})
	}()
	defer func() {
		stop()
		<-done
	}()
	next := func(want string) string {
		t.Helper()
		select {
		case got := <-lines:
			return got
		case <-ctx.Done():
			t.Fatalf("native client: waiting for %q: %v", want, ctx.Err())
			return ""
		}
	}
	expect := func(want string) {
		t.Helper()
		if got := next(want); got != want {
			t.Fatalf("native client got %q; want %q", got, want)
		}
	}
	if got := next("hello"); !strings.HasPrefix(got, "hello since ") {
		t.Fatalf("native client got %q first; want its hello", got)
	}
	f1 := postFrame(t, ctx, producer, "c")
	expect(fmt.Sprintf("frame %d", f1))

	comfy, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(gw.URL, "http")+"/comfyui-deploy/ws?clientId=c", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer comfy.CloseNow()
	if _, b, err := comfy.Read(ctx); err != nil || string(b) != string(wire.Status("c")) {
		t.Fatalf("comfydeploy: got %q, %v; want the status message", b, err)
	}

	proxy.Cut()
	select {
	case <-disconnected:
	case <-ctx.Done():
		t.Fatal("the native client never saw its connection cut")
	}
	// The producer's text, as an app's server would send it: its own member
	// order and spacing.
	body := `{"data": {"prompt_id": "p1", "timestamp": 1733000000000},  "event":"execution_start"}`
	f2 := postFrame(t, ctx, producer, "")
	ev := postEvent(t, ctx, producer, "", body)
	postEvent(t, ctx, producer, "d", `{"event":"progress","data":{"value":1,"max":2}}`) // another client's
	f3 := postFrame(t, ctx, producer, "c")
	if seq, _, _ := st.Resume(); seq != f1 {
		t.Fatalf("resume point while cut off: got %d; want the last frame's %d", seq, f1)
	}
	proxy.Restore()

	expect(fmt.Sprintf("hello since %d", f1))
	expect(fmt.Sprintf("frame %d", f2))
	// The native control message carries the same data, byte for byte.
	expect(fmt.Sprintf(`event %d execution_start {"prompt_id": "p1", "timestamp": 1733000000000}`, ev))
	expect(fmt.Sprintf("frame %d", f3))
	if !(f1 < f2 && f2 < ev && ev < f3) {
		t.Fatalf("sequences %d, %d, %d, %d; want them increasing as published", f1, f2, ev, f3)
	}
	// Live again: the next event comes once, after the replay.
	last := postEvent(t, ctx, producer, "c", `{"event":"executing","data":{"node":null,"prompt_id":"p1"}}`)
	expect(fmt.Sprintf(`event %d executing {"node":null,"prompt_id":"p1"}`, last))

	// The ComfyDeploy socket: frame, the event's very text, frame, event.
	for _, want := range []string{"binary", body, "binary", `{"event":"executing","data":{"node":null,"prompt_id":"p1"}}`} {
		typ, b, err := comfy.Read(ctx)
		if err != nil {
			t.Fatalf("comfydeploy: waiting for %q: %v", want, err)
		}
		got := string(b)
		if typ == websocket.MessageBinary {
			got = "binary"
		}
		if got != want {
			t.Fatalf("comfydeploy: got %q; want %q", got, want)
		}
	}
}
