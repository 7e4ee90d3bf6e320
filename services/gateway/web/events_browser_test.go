package web_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/services/gateway"
	"github.com/framecast/framecast/services/gateway/gatewaytest"
	"github.com/framecast/framecast/services/gateway/web/webtest"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// eventLines describes the page's event events as "<seq> <name> <data>".
func eventLines(page *webtest.Page) string {
	var got []string
	for _, e := range findEvents(events(page), "event") {
		got = append(got, fmt.Sprintf("%d %s %s", e.Seq, e.Name, e.Data))
	}
	return strings.Join(got, ", ")
}

// TestClientEvents: framecast.js emits native events with their seq, drops
// one it has seen (a replay overlapping what it delivered), resumes after
// the last event's seq, and reports an event without a seq as an error.
func TestClientEvents(t *testing.T) {
	browser := webtest.Browser(t)
	s := newScripted(t)
	png := encodeImage(t, frame.PNG, 8, 4)
	event := func(seq uint64, name, data string) []byte {
		return control(wire.Control{Type: wire.TypeEvent, Seq: new(seq), Event: name, Data: []byte(data)})
	}
	queries := make(chan string, 2)
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- q.Encode()
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeHello, OutputID: "x", Since: new(uint64(0)), Epoch: "e1"}))
		send(ctx, t, c, websocket.MessageBinary, wire.EncodeNative(wire.HeaderOf(1, frame.Meta{OutputID: "x", Format: frame.PNG, Width: 8, Height: 4, BatchSize: 1}), png))
		send(ctx, t, c, websocket.MessageText, event(2, "progress", `{"value":3,"max":20}`))
		send(ctx, t, c, websocket.MessageText, event(2, "progress", `{"value":3,"max":20}`))
		c.Close(wire.CloseGoingAway, "draining")
	})
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- q.Encode()
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeHello, OutputID: "x", Since: new(uint64(2)), Epoch: "e1"}))
		send(ctx, t, c, websocket.MessageText, event(2, "progress", `{"value":3,"max":20}`))
		send(ctx, t, c, websocket.MessageText, []byte(`{"type":"event","event":"progress","data":{}}`))
		send(ctx, t, c, websocket.MessageText, event(3, "executing", `{"node":null,"prompt_id":"p1"}`))
		c.Read(ctx) // until the client closes
	})
	page := webtest.Open(t, browser, s.srv.URL+"/")
	startClient(t, page, map[string]any{"urls": s.srv.URL, "outputId": "x", "since": 0, "epoch": "e1", "backoffBase": 20})
	page.Wait(`window.__t.events.some((e) => e.event === "event" && e.name === "executing")`, `JSON.stringify(window.__t)`)

	for i, want := range []string{"epoch=e1&output_id=x&since=0", "epoch=e1&output_id=x&since=2"} {
		if got := <-queries; got != want {
			t.Errorf("connection %d query %q; want %q", i+1, got, want)
		}
	}
	if got, want := eventLines(page), `2 progress {"value":3,"max":20}, 3 executing {"node":null,"prompt_id":"p1"}`; got != want {
		t.Errorf("events %q; want %q", got, want)
	}
	if errs := findEvents(events(page), "error"); len(errs) != 1 || errs[0].Msg != `malformed message: event "progress" has no seq` {
		t.Errorf("error events %+v; want one saying the event has no seq", errs)
	}
	position(t, page, "e1 3")
}

// TestClientComfyDeployEvents: on the ComfyDeploy endpoint the first status
// message is the gateway's; every other text message, ComfyUI's own status
// events included, is an event without seq, and once one came a reconnect
// does not repeat the first since.
func TestClientComfyDeployEvents(t *testing.T) {
	browser := webtest.Browser(t)
	s := newScripted(t)
	queries := make(chan string, 2)
	queue := `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":1}},"sid":"c1"}}`
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- q.Encode()
		send(ctx, t, c, websocket.MessageText, wire.Status("c1"))
		send(ctx, t, c, websocket.MessageText, []byte(queue))
		send(ctx, t, c, websocket.MessageText, []byte(`{"data":{"value":1,"max":4},"event":"progress"}`))
		c.Close(wire.CloseGoingAway, "draining")
	})
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- q.Encode()
		send(ctx, t, c, websocket.MessageText, wire.Status("c1"))
		send(ctx, t, c, websocket.MessageText, []byte(`{"event":"execution_success","data":{"prompt_id":"p1"}}`))
		c.Read(ctx)
	})
	page := webtest.Open(t, browser, s.srv.URL+"/")
	startClient(t, page, map[string]any{"urls": s.srv.URL, "endpoint": "comfydeploy", "clientId": "c1", "since": 5, "backoffBase": 20})
	page.Wait(`window.__t.events.some((e) => e.name === "execution_success")`, `JSON.stringify(window.__t)`)

	for i, want := range []string{"clientId=c1&since=5", "clientId=c1"} {
		if got := <-queries; got != want {
			t.Errorf("connection %d query %q; want %q", i+1, got, want)
		}
	}
	want := `0 status {"status":{"exec_info":{"queue_remaining":1}},"sid":"c1"}, 0 progress {"value":1,"max":4}, 0 execution_success {"prompt_id":"p1"}`
	if got := eventLines(page); got != want {
		t.Errorf("events %q; want %q", got, want)
	}
	if seqs := webtest.Eval[string](page, `JSON.stringify(window.__t.events.filter((e) => e.event === "event").map((e) => e.seq))`); seqs != "[null,null,null]" {
		t.Errorf("event seqs %s; want null on the comfydeploy endpoint", seqs)
	}
	if st := findEvents(events(page), "status"); len(st) != 2 {
		t.Errorf("status events %+v; want the gateway's, once per connection", st)
	}
	webtest.Eval[bool](page, `(window.__client.close(), true)`)
}

// TestViewerEvents: the viewer served by a real gateway drives its prompt
// line from ComfyUI events stored in the stream as the producer stores
// them: queue count, progress bar, current node and "done", and logs each
// event of its client id or every client, none of another client's.
func TestViewerEvents(t *testing.T) {
	browser := webtest.Browser(t)
	f := gatewaytest.Start(t, func(c *gateway.Config) { c.Viewer = true })
	page := webtest.Open(t, browser, f.URL+"/?output_id=o&client_id=c&autoconnect=1")
	page.Wait(`window.__log.some((l) => l.kind === "hello")`, `JSON.stringify(window.__log)`)

	const run = `[document.getElementById("run-state").textContent, document.getElementById("progress").value,
	  document.getElementById("percent").textContent, document.getElementById("node").textContent,
	  document.getElementById("queue").textContent].join(" ")`
	var seqs []uint64
	for _, step := range []struct {
		cid, event, want string
	}{
		{"", `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":3}},"sid":"c"}}`, "idle 0 0% - 3"},
		{"c", `{"event":"execution_start","data":{"prompt_id":"p1"}}`, "running 0 0% - 3"},
		{"c", `{"event":"executing","data":{"node":"4","prompt_id":"p1"}}`, "running 0 0% 4 3"},
		{"c", `{"event":"live_status","data":{"prompt_id":"p1","current_node":"KSampler","progress":0.25}}`, "running 0.25 25% KSampler 3"},
		{"c", `{"event":"progress","data":{"value":15,"max":20,"prompt_id":"p1","node":"4"}}`, "running 0.75 75% KSampler 3"},
		{"d", `{"event":"live_status","data":{"prompt_id":"p9","current_node":"Other","progress":0.1}}`, ""},
		{"c", `{"event":"executing","data":{"node":null,"prompt_id":"p1"}}`, "done 1 100% - 3"},
	} {
		seq := f.Event(step.cid, step.event)
		if step.want == "" {
			continue // another client's: nothing to wait for
		}
		seqs = append(seqs, seq)
		page.Wait(run+` === `+fmt.Sprintf("%q", step.want), run)
	}
	logged := webtest.Eval[string](page, `JSON.stringify(window.__log.filter((l) => l.kind === "event").map((l) => l.detail.seq))`)
	if want := strings.ReplaceAll(fmt.Sprint(seqs), " ", ","); logged != want {
		t.Errorf("logged event seqs %s; want %s (one line per event of this client, none of another)", logged, want)
	}
}
