package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/services/gateway/web"
	"github.com/framecast/framecast/services/gateway/web/webtest"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// scripted is a websocket server that plays one script per accepted
// connection, in order, and serves the browser assets beside it. It is a
// real socket server with canned behaviour, so the client can be driven
// through failures a gateway shows only under load or while draining.
type scripted struct {
	t       *testing.T
	srv     *httptest.Server
	done    context.Context
	scripts chan func(ctx context.Context, c *websocket.Conn, q url.Values)
}

func newScripted(t *testing.T) *scripted {
	done, cancel := context.WithCancel(context.Background())
	s := &scripted{t: t, done: done, scripts: make(chan func(context.Context, *websocket.Conn, url.Values), 8)}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/v1/ws", s.serveWS)
	mux.HandleFunc("/comfyui-deploy/ws", s.serveWS)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		cancel()
		s.srv.Close()
	})
	return s
}

// play queues the script for the next connection.
func (s *scripted) play(f func(ctx context.Context, c *websocket.Conn, q url.Values)) { s.scripts <- f }

func (s *scripted) serveWS(w http.ResponseWriter, r *http.Request) {
	var script func(context.Context, *websocket.Conn, url.Values)
	select {
	case script = <-s.scripts:
	default:
		s.t.Errorf("unexpected connection %s", r.URL)
		http.Error(w, "no script for this connection", http.StatusServiceUnavailable)
		return
	}
	// The page is served from another test server: allow any loopback origin.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"127.0.0.1:*"}})
	if err != nil {
		s.t.Errorf("accept: %v", err)
		return
	}
	defer c.CloseNow()
	script(s.done, c, r.URL.Query())
}

func send(ctx context.Context, t *testing.T, c *websocket.Conn, typ websocket.MessageType, b []byte) {
	if err := c.Write(ctx, typ, b); err != nil {
		t.Errorf("write: %v", err)
	}
}

func control(c wire.Control) []byte { return wire.EncodeControl(c) }

// encodeImage returns a w×h image in format f (PNG or JPEG).
func encodeImage(t *testing.T, f frame.Format, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), 128, 255})
		}
	}
	var buf bytes.Buffer
	var err error
	switch f {
	case frame.PNG:
		err = png.Encode(&buf, img)
	case frame.JPEG:
		err = jpeg.Encode(&buf, img, nil)
	default:
		t.Fatalf("encodeImage: format %v unsupported here", f)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pageHarness creates a FramecastClient in the page as window.__client and
// records its events in window.__t.events and its frames, with the size the
// browser decoded from the Blob, in window.__t.frames.
const pageHarness = `(async (opts) => {
  const m = await import("/framecast.js");
  const t = { events: [], frames: [] };
  window.__t = t;
  const c = new m.FramecastClient(opts);
  for (const k of ["state", "open", "hello", "status", "live", "gap", "reset", "close", "reconnect", "error", "control", "event"]) {
    c.addEventListener(k, (e) => t.events.push({ event: k, ...e.detail }));
  }
  c.addEventListener("frame", async (e) => {
    const d = e.detail;
    const rec = { seq: d.seq, outputId: d.outputId, contentType: d.contentType, blobType: d.blob.type,
      bytes: d.bytes, width: d.width, height: d.height, gateway: d.gateway };
    t.frames.push(rec);
    try {
      const bmp = await createImageBitmap(d.blob);
      rec.decoded = bmp.width + "x" + bmp.height;
    } catch (err) {
      rec.decoded = "error: " + err;
    }
    URL.revokeObjectURL(d.url);
  });
  window.__client = c;
  c.connect();
  return true;
})`

type pageEvent struct {
	Event  string `json:"event"`
	Type   string `json:"type"`
	State  string `json:"state"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
	URL    string `json:"url"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
	Seq    uint64 `json:"seq"`
	Since  uint64 `json:"since"`
	Epoch  string `json:"epoch"`
	SID    string `json:"sid"`
	Msg    string `json:"message"`
	// event: the ComfyUI event's name and data (its seq is Seq, 0 for
	// ComfyDeploy's null)
	Name string          `json:"name"`
	Data json.RawMessage `json:"data"`
}

type pageFrame struct {
	Seq         *uint64 `json:"seq"`
	OutputID    string  `json:"outputId"`
	ContentType string  `json:"contentType"`
	BlobType    string  `json:"blobType"`
	Bytes       int     `json:"bytes"`
	Gateway     string  `json:"gateway"`
	Decoded     string  `json:"decoded"`
}

func startClient(t *testing.T, page *webtest.Page, opts map[string]any) {
	t.Helper()
	b, _ := json.Marshal(opts)
	webtest.Eval[bool](page, pageHarness+"("+string(b)+")")
}

func events(page *webtest.Page) []pageEvent {
	return webtest.Eval[[]pageEvent](page, "window.__t.events")
}
func frames(page *webtest.Page) []pageFrame {
	return webtest.Eval[[]pageFrame](page, "window.__t.frames")
}

func findEvents(evs []pageEvent, name string) []pageEvent {
	var out []pageEvent
	for _, e := range evs {
		if e.Event == name {
			out = append(out, e)
		}
	}
	return out
}

// TestClientResumesAcrossGateways drives framecast.js in Chromium through a
// drain (1001) on one gateway, failover to the next URL with since=<last seq>,
// a replay overlapping what it saw, a gap, a slow-client cut (4008), and an
// auth refusal (1008) that must stop it.
func TestClientResumesAcrossGateways(t *testing.T) {
	browser := webtest.Browser(t)
	a, b := newScripted(t), newScripted(t)
	png64 := encodeImage(t, frame.PNG, 64, 48)
	png80 := encodeImage(t, frame.PNG, 80, 60)
	jpg32 := encodeImage(t, frame.JPEG, 32, 16)
	native := func(seq uint64, f frame.Format, w, h int, img []byte) []byte {
		return wire.EncodeNative(wire.HeaderOf(seq, frame.Meta{OutputID: "x", Format: f, Width: w, Height: h, BatchSize: 1, Timestamp: time.Now().UnixMilli()}), img)
	}
	queries := make(chan string, 8)

	// Gateway A: frames 1-3 and a duplicate of 2, then it drains.
	a.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- "a " + q.Encode()
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeHello, Gateway: "a", OutputID: "x", Since: new(uint64(0))}))
		send(ctx, t, c, websocket.MessageBinary, native(1, frame.PNG, 64, 48, png64))
		send(ctx, t, c, websocket.MessageBinary, native(2, frame.PNG, 80, 60, png80))
		send(ctx, t, c, websocket.MessageBinary, native(3, frame.JPEG, 32, 16, jpg32))
		send(ctx, t, c, websocket.MessageBinary, native(2, frame.PNG, 80, 60, png80))
		c.Close(wire.CloseGoingAway, "gateway draining")
	})
	// Gateway B: replays from since, overlapping frame 3, reports a gap, goes
	// live, then cuts the client off as too slow.
	b.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- "b " + q.Encode()
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeHello, Gateway: "b", OutputID: "x", Since: new(uint64(3))}))
		send(ctx, t, c, websocket.MessageBinary, native(3, frame.JPEG, 32, 16, jpg32))
		send(ctx, t, c, websocket.MessageBinary, native(4, frame.PNG, 64, 48, png64))
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeGap, From: 5, To: 6}))
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeLive, Seq: new(uint64(6))}))
		send(ctx, t, c, websocket.MessageBinary, native(7, frame.PNG, 80, 60, png80))
		c.Close(wire.CloseSlowClient, "client too slow")
	})
	// Gateway A again, round robin: the token has expired.
	a.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- "a " + q.Encode()
		c.Close(wire.ClosePolicy, "token expired")
	})

	page := webtest.Open(t, browser, a.srv.URL+"/")
	startClient(t, page, map[string]any{
		"urls": []string{a.srv.URL, b.srv.URL + "/"}, "outputId": "x", "token": "tok",
		"backoffBase": 20, "backoffMax": 200,
	})
	page.Wait(`window.__t.frames.length >= 5 && window.__t.frames.every((f) => f.decoded) && window.__client.state === "closed"`,
		`JSON.stringify(window.__t)`)

	wantQueries := []string{
		"a output_id=x&token=tok",
		"b output_id=x&since=3&token=tok",
		"a output_id=x&since=7&token=tok",
	}
	for i, want := range wantQueries {
		if got := <-queries; got != want {
			t.Errorf("connection %d query %q; want %q", i+1, got, want)
		}
	}

	fs := frames(page)
	var got []string
	for _, f := range fs {
		got = append(got, fmt.Sprintf("%d %s %s %s", *f.Seq, f.ContentType, f.BlobType, f.Decoded))
	}
	want := []string{
		"1 image/png image/png 64x48",
		"2 image/png image/png 80x60",
		"3 image/jpeg image/jpeg 32x16",
		"4 image/png image/png 64x48",
		"7 image/png image/png 80x60",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("frames:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fs[0].Gateway != a.srv.URL || fs[3].Gateway != b.srv.URL+"/" {
		t.Errorf("frames 1 and 4 came from %s and %s; want %s and %s/", fs[0].Gateway, fs[3].Gateway, a.srv.URL, b.srv.URL)
	}

	evs := events(page)
	var closes []string
	for _, e := range findEvents(evs, "close") {
		closes = append(closes, fmt.Sprintf("%d %s", e.Code, e.Reason))
	}
	if got, want := strings.Join(closes, ", "), "1001 gateway draining, 4008 client too slow, 1008 token expired"; got != want {
		t.Errorf("close events %q; want %q", got, want)
	}
	if gaps := findEvents(evs, "gap"); len(gaps) != 1 || gaps[0].From != 5 || gaps[0].To != 6 {
		t.Errorf("gap events %+v; want one from 5 to 6", gaps)
	}
	if lives := findEvents(evs, "live"); len(lives) != 1 || lives[0].Seq != 6 {
		t.Errorf("live events %+v; want one at seq 6", lives)
	}
	if rs := findEvents(evs, "reconnect"); len(rs) != 2 || !strings.Contains(rs[0].URL, "since=3") || !strings.Contains(rs[1].URL, "since=7") {
		t.Errorf("reconnect events %+v; want two, with since=3 then since=7", rs)
	}
	errs := findEvents(evs, "error")
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "1008") || !strings.Contains(errs[0].Msg, "token expired") {
		t.Errorf("error events %+v; want one naming 1008 and the reason", errs)
	}
	// Refused access is final: no reconnect is pending.
	if pending := webtest.Eval[bool](page, `window.__client.timer !== null || window.__client.ws !== null`); pending {
		t.Error("client still holds a socket or a reconnect timer after 1008")
	}
}

// TestClientEpochAndReset resumes with since and epoch, keeps its position
// when a connection drops between a hello of another epoch and its reset,
// follows a reset right after hello and one in the middle of a connection
// (the stream recreated under it) to lower sequences without taking them
// for duplicates, and resumes in the reset's epoch.
func TestClientEpochAndReset(t *testing.T) {
	browser := webtest.Browser(t)
	s := newScripted(t)
	png := encodeImage(t, frame.PNG, 8, 4)
	native := func(seq uint64) []byte {
		return wire.EncodeNative(wire.HeaderOf(seq, frame.Meta{OutputID: "x", Format: frame.PNG, Width: 8, Height: 4, BatchSize: 1}), png)
	}
	queries := make(chan string, 4)
	script := func(msgs ...any) func(context.Context, *websocket.Conn, url.Values) {
		return func(ctx context.Context, c *websocket.Conn, q url.Values) {
			queries <- q.Encode()
			for _, m := range msgs {
				switch m := m.(type) {
				case wire.Control:
					send(ctx, t, c, websocket.MessageText, control(m))
				case uint64:
					send(ctx, t, c, websocket.MessageBinary, native(m))
				case int:
					c.Close(websocket.StatusCode(m), "draining")
					return
				}
			}
			c.Read(ctx) // until the client closes
		}
	}
	hello := func(since uint64, epoch string) wire.Control {
		return wire.Control{Type: wire.TypeHello, OutputID: "x", Since: new(since), Epoch: epoch}
	}
	reset := func(since uint64, epoch, msg string) wire.Control {
		return wire.Control{Type: wire.TypeReset, Since: new(since), Epoch: epoch, Message: msg}
	}
	s.play(script(hello(5, "e1"), uint64(6), uint64(7), wire.CloseGoingAway))
	s.play(script(hello(9, "e2"), wire.CloseGoingAway))
	s.play(script(hello(7, "e2"), reset(0, "e2", "other epoch"), uint64(1), uint64(2),
		reset(1, "e3", "recreated"), uint64(1), uint64(2), wire.CloseGoingAway))
	s.play(script(hello(2, "e3"), uint64(2), uint64(3)))

	page := webtest.Open(t, browser, s.srv.URL+"/")
	startClient(t, page, map[string]any{"urls": s.srv.URL, "outputId": "x", "since": 5, "epoch": "e1", "backoffBase": 20})
	page.Wait(`window.__t.frames.some((f) => f.seq === 3) && window.__t.frames.every((f) => f.decoded)`, `JSON.stringify(window.__t)`)

	for i, want := range []string{"epoch=e1&output_id=x&since=5", "epoch=e1&output_id=x&since=7", "epoch=e1&output_id=x&since=7", "epoch=e3&output_id=x&since=2"} {
		if got := <-queries; got != want {
			t.Errorf("connection %d query %q; want %q", i+1, got, want)
		}
	}
	var got []string
	for _, f := range frames(page) {
		got = append(got, fmt.Sprintf("%d %s", *f.Seq, f.Decoded))
	}
	if got, want := strings.Join(got, ", "), "6 8x4, 7 8x4, 1 8x4, 2 8x4, 2 8x4, 3 8x4"; got != want {
		t.Errorf("frames %q; want %q", got, want)
	}
	var resets []string
	for _, e := range findEvents(events(page), "reset") {
		resets = append(resets, fmt.Sprintf("%s %d %s", e.Epoch, e.Since, e.Msg))
	}
	if got, want := strings.Join(resets, ", "), "e2 0 other epoch, e3 1 recreated"; got != want {
		t.Errorf("reset events %q; want %q", got, want)
	}
	position(t, page, "e3 3")
}

// position checks the client's epoch and last seq ("<epoch> <seq>"), then
// closes it.
func position(t *testing.T, page *webtest.Page, want string) {
	t.Helper()
	if got := webtest.Eval[string](page, `window.__client.epoch + " " + window.__client.lastSeq`); got != want {
		t.Errorf("client epoch and last seq %q; want %q", got, want)
	}
	webtest.Eval[bool](page, `(window.__client.close(), true)`)
}

// TestClientRefusesResetWithoutSince reports a reset it cannot follow as an
// error and keeps its position.
func TestClientRefusesResetWithoutSince(t *testing.T) {
	browser := webtest.Browser(t)
	s := newScripted(t)
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeHello, Since: new(uint64(4)), Epoch: "e1"}))
		send(ctx, t, c, websocket.MessageText, []byte(`{"type":"reset","epoch":"e2"}`))
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeLive, Seq: new(uint64(4))}))
		c.Read(ctx)
	})
	page := webtest.Open(t, browser, s.srv.URL+"/")
	startClient(t, page, map[string]any{"urls": s.srv.URL, "outputId": "x"})
	page.Wait(`window.__t.events.some((e) => e.event === "live")`, `JSON.stringify(window.__t)`)
	errs := findEvents(events(page), "error")
	if len(errs) != 1 || errs[0].Msg != `malformed message: reset to epoch "e2" has no since` {
		t.Errorf("error events %+v; want one saying the reset has no since", errs)
	}
	position(t, page, "e1 4")
}

// TestViewerLogsReset: the viewer page logs a reset and shows the frames
// after it.
func TestViewerLogsReset(t *testing.T) {
	browser := webtest.Browser(t)
	s := newScripted(t)
	png := encodeImage(t, frame.PNG, 8, 4)
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeHello, Since: new(uint64(9)), Epoch: "e1"}))
		send(ctx, t, c, websocket.MessageText, control(wire.Control{Type: wire.TypeReset, Since: new(uint64(0)), Epoch: "e2", Message: "recreated"}))
		send(ctx, t, c, websocket.MessageBinary, wire.EncodeNative(wire.HeaderOf(1, frame.Meta{OutputID: "x", Format: frame.PNG, Width: 8, Height: 4, BatchSize: 1}), png))
		c.Read(ctx)
	})
	page := webtest.Open(t, browser, s.srv.URL+"/?output_id=x&autoconnect=1")
	page.Wait(`window.__frames.length === 1 && window.__log.some((l) => l.kind === "reset")`, `JSON.stringify(window.__log)`)
	got := webtest.Eval[string](page, `JSON.stringify(window.__log.find((l) => l.kind === "reset").detail)`)
	if want := `{"epoch":"e2","since":0,"message":"recreated"}`; got != want {
		t.Errorf("logged reset %s; want %s", got, want)
	}
	if seq := webtest.Eval[int](page, `window.__frames[0].seq`); seq != 1 {
		t.Errorf("frame shown has seq %d; want 1", seq)
	}
}

// TestClientComfyDeploy receives a seed-format frame on the ComfyDeploy
// endpoint, reconnects after a drain without repeating its first since (the
// protocol has no seq to resume from), and closes with a normal closure.
func TestClientComfyDeploy(t *testing.T) {
	browser := webtest.Browser(t)
	s := newScripted(t)
	png64 := encodeImage(t, frame.PNG, 64, 48)
	queries := make(chan string, 2)
	closed := make(chan string, 1)
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- q.Encode()
		send(ctx, t, c, websocket.MessageText, wire.Status("c1"))
		f, err := wire.EncodeComfy("out-1", frame.PNG, png64)
		if err != nil {
			t.Error(err)
			return
		}
		send(ctx, t, c, websocket.MessageBinary, f)
		c.Close(wire.CloseGoingAway, "draining")
	})
	s.play(func(ctx context.Context, c *websocket.Conn, q url.Values) {
		queries <- q.Encode()
		send(ctx, t, c, websocket.MessageText, wire.Status("c1"))
		_, _, err := c.Read(ctx)
		closed <- fmt.Sprintf("%d", websocket.CloseStatus(err))
	})
	page := webtest.Open(t, browser, s.srv.URL+"/")
	startClient(t, page, map[string]any{"urls": s.srv.URL, "endpoint": "comfydeploy", "clientId": "c1", "since": 5, "backoffBase": 20})
	page.Wait(`window.__t.frames.length === 1 && window.__t.frames[0].decoded && window.__t.events.filter((e) => e.event === "status").length === 2`,
		`JSON.stringify(window.__t)`)

	for i, want := range []string{"clientId=c1&since=5", "clientId=c1"} {
		if got := <-queries; got != want {
			t.Errorf("connection %d query %q; want %q", i+1, got, want)
		}
	}
	f := frames(page)[0]
	if got, want := fmt.Sprintf("%v %s %s %s %d", f.Seq, f.OutputID, f.BlobType, f.Decoded, f.Bytes),
		fmt.Sprintf("<nil> out-1 image/png 64x48 %d", len(png64)); got != want {
		t.Errorf("frame %q; want %q", got, want)
	}
	if st := findEvents(events(page), "status"); st[0].SID != "c1" {
		t.Errorf("status events %+v; want sid c1", st)
	}
	webtest.Eval[bool](page, `(window.__client.close(), true)`)
	select {
	case got := <-closed:
		if got != "1000" {
			t.Errorf("server saw close status %s; want 1000", got)
		}
	case <-time.After(webtest.WaitTimeout):
		t.Fatal("server saw no close")
	}
}
