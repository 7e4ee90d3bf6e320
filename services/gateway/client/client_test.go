package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

func TestDialNative(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		sendControl(t, ws, wire.Control{Type: wire.TypeHello, Gateway: "gw1", OutputID: "demo", Since: u64(4)})
		sendFrame(t, ws, 5)
		sendControl(t, ws, wire.Control{Type: wire.TypeGap, From: 6, To: 9})
		sendControl(t, ws, wire.Control{Type: wire.TypeLive, Seq: u64(5)})
		sendControl(t, ws, wire.Control{Type: wire.TypeReset, Epoch: "e2", Since: u64(0), Message: "stream recreated"})
		sendControl(t, ws, wire.Control{Type: "future", Message: "x"})
		sendControl(t, ws, wire.Control{Type: wire.TypeEvent, Seq: u64(11), Event: "progress", Data: []byte(`{"value":3,"max":20}`)})
	})
	c, err := Dial(t.Context(), Config{URL: g.URL + "/", OutputID: "demo", ClientID: "c 1", Token: "tok", Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	r := g.request(t, 0)
	if got, want := r.URL.Path, PathNative; got != want {
		t.Errorf("path got %q; want %q", got, want)
	}
	if got, want := r.URL.RawQuery, "client_id=c+1&last=3&output_id=demo"; got != want {
		t.Errorf("query got %q; want %q", got, want)
	}
	if got, want := r.Header.Get("Authorization"), "Bearer tok"; got != want {
		t.Errorf("authorization got %q; want %q", got, want)
	}

	m := next(t, c)
	if h := m.(*Control); h.Type != wire.TypeHello || h.Gateway != "gw1" || h.Since == nil || *h.Since != 4 {
		t.Fatalf("got %+v; want hello from gw1 since 4", h)
	}
	f := next(t, c).(*Frame)
	if f.Seq != 5 || f.Format != frame.WEBP || f.OutputID != "demo" || f.Header.ClientID != "c1" ||
		f.Header.Width != 4 || f.Header.Height != 3 || f.Header.TS != 1700000000000 || string(f.Image) != "img-5" {
		t.Fatalf("got %+v; want frame 5 of demo, webp 4x3, image img-5", f)
	}
	if g := next(t, c).(*Control); g.Type != wire.TypeGap || g.From != 6 || g.To != 9 {
		t.Fatalf("got %+v; want gap 6..9", g)
	}
	if l := next(t, c).(*Control); l.Type != wire.TypeLive || l.Seq == nil || *l.Seq != 5 {
		t.Fatalf("got %+v; want live at 5", l)
	}
	if r := next(t, c).(*Control); r.Type != wire.TypeReset || r.Epoch != "e2" || r.Since == nil || *r.Since != 0 || r.Message != "stream recreated" {
		t.Fatalf("got %+v; want reset to epoch e2 since 0", r)
	}
	if u := next(t, c).(*Control); u.Type != "future" || u.Message != "x" {
		t.Fatalf("got %+v; want the unknown control passed on", u)
	}
	if e := next(t, c).(*Control); e.Type != wire.TypeEvent || e.Event != "progress" || *e.Seq != 11 || string(e.Data) != `{"value":3,"max":20}` {
		t.Fatalf("got %+v; want event progress at seq 11 with its data", e)
	}
}

func TestDialComfyDeploy(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		send(t, ws, websocket.MessageText, wire.Status("sid-1"))
		sendComfy(t, ws, "other", "skipped")
		sendComfy(t, ws, "demo", "png-bytes")
		send(t, ws, websocket.MessageText, []byte(`{"event":"status","data":{"status":{"exec_info":{"queue_remaining":2}},"sid":"sid-1"}}`))
		send(t, ws, websocket.MessageText, []byte(`{"data": {"node": null}, "event": "executing"}`))
	})
	c, err := Dial(t.Context(), Config{URL: g.URL + "/prefix", OutputID: "demo", ComfyDeploy: true, Since: u64(7)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := g.request(t, 0)
	if got, want := r.URL.Path, "/prefix"+PathComfyDeploy; got != want {
		t.Errorf("path got %q; want %q", got, want)
	}
	if got, want := r.URL.RawQuery, "since=7"; got != want {
		t.Errorf("query got %q; want %q", got, want)
	}
	if s := next(t, c).(*Control); s.Type != TypeStatus || s.SID != "sid-1" {
		t.Fatalf("got %+v; want status sid-1", s)
	}
	f := next(t, c).(*Frame)
	if f.Seq != 0 || f.OutputID != "demo" || f.Format != frame.PNG || f.Header.ContentType != "image/png" || string(f.Image) != "png-bytes" {
		t.Fatalf("got %+v; want png frame of demo without seq", f)
	}
	// ComfyUI's own status event is an event, not the gateway's status.
	for _, want := range []string{
		`event status <nil> {"status":{"exec_info":{"queue_remaining":2}},"sid":"sid-1"}`,
		`event executing <nil> {"node": null}`,
	} {
		e := next(t, c).(*Control)
		if got := fmt.Sprintf("%s %s %v %s", e.Type, e.Event, e.Seq, e.Data); got != want || e.SID != "" {
			t.Fatalf("got %q (sid %q); want %q", got, e.SID, want)
		}
	}
}

func TestDialURLForms(t *testing.T) {
	tests := []struct {
		name, base string
		comfy      bool
		since      *uint64
		epoch      string
		want       string
	}{
		{"http", "http://h:1", false, nil, "", "ws://h:1/v1/ws?output_id=o"},
		{"https prefix slash", "https://h/gw/", false, nil, "", "wss://h/gw/v1/ws?output_id=o"},
		{"ws with path", "ws://h/v1/ws", false, nil, "", "ws://h/v1/ws?output_id=o"},
		{"comfy", "http://h", true, nil, "", "ws://h/comfyui-deploy/ws?clientId=c"},
		{"since epoch", "http://h", false, u64(0), "2026-11-30T19:53:55Z &x", "ws://h/v1/ws?epoch=2026-11-30T19%3A53%3A55Z+%26x&output_id=o&since=0"},
		{"comfy since epoch", "http://h", true, u64(3), "e1", "ws://h/comfyui-deploy/ws?clientId=c&epoch=e1&since=3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cid := ""
			if tt.comfy {
				cid = "c"
			}
			got, err := Config{OutputID: "o", ClientID: cid, ComfyDeploy: tt.comfy, Since: tt.since, Epoch: tt.epoch}.endpoint(tt.base)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestConfigRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"scheme", Config{URL: "ftp://h", OutputID: "o"}, "allowed: http, https, ws, wss"},
		{"no host", Config{URL: "http://", OutputID: "o"}, "has no host"},
		{"unparsable", Config{URL: "http://h:port", OutputID: "o"}, "gateway url"},
		{"no output", Config{URL: "http://h"}, "output_id is empty"},
		{"long output", Config{URL: "http://h", OutputID: strings.Repeat("o", 25)}, "greater than 24 bytes"},
		{"client id", Config{URL: "http://h", OutputID: "o", ClientID: "a\nb"}, "control character"},
		{"negative last", Config{URL: "http://h", OutputID: "o", Last: -1}, "allowed: 0 (off) or a positive count"},
		{"since and last", Config{URL: "http://h", OutputID: "o", Last: 2, Since: u64(1)}, "allowed: one of them"},
		{"epoch without since", Config{URL: "http://h", OutputID: "o", Epoch: "e1"}, `epoch "e1" is set without since`},
		{"epoch with last", Config{URL: "http://h", OutputID: "o", Last: 2, Epoch: "e1"}, `epoch "e1" is set without since`},
		{"read limit", Config{URL: "http://h", OutputID: "o", ReadLimit: -2}, "allowed: -1 (none)"},
		{"comfy output", Config{URL: "http://h", OutputID: "é", ComfyDeploy: true}, "not ASCII"},
		{"unknown rendition", Config{URL: "http://h", OutputID: "o", Rendition: "thumb"}, `rendition "thumb"; allowed: full (or empty), preview, all`},
		{"comfy last", Config{URL: "http://h", ComfyDeploy: true, Last: 3}, "last is set on the ComfyDeploy endpoint; allowed there: since"},
		{"comfy previews", Config{URL: "http://h", ComfyDeploy: true, Rendition: "preview"}, "it never sends previews"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(t.Context(), tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v; want ErrInvalidConfig", err)
			}
			contains(t, err, tt.want)
		})
	}
}

func TestMalformed(t *testing.T) {
	comfy, _ := wire.EncodeComfy("demo", frame.PNG, nil)
	comfy[7] = 9
	badType := wire.EncodeNative(wire.Header{Seq: 3, ContentType: "text/plain"}, nil)
	tests := []struct {
		name  string
		comfy bool
		typ   websocket.MessageType
		msg   []byte
		want  string
	}{
		{"short native", false, websocket.MessageBinary, []byte{0, 0}, "shorter than its 4-byte length"},
		{"native length", false, websocket.MessageBinary, []byte{0, 0, 0, 50, '{', '}'}, "exceeds the frame"},
		{"native seq 0", false, websocket.MessageBinary, wire.EncodeNative(wire.Header{ContentType: "image/png"}, nil), "seq 0"},
		{"native content type", false, websocket.MessageBinary, badType, "allowed: image/webp"},
		{"control not json", false, websocket.MessageText, []byte("hello"), "control message"},
		{"control no type", false, websocket.MessageText, []byte(`{"from":1}`), "has no type"},
		{"reset no since", false, websocket.MessageText, []byte(`{"type":"reset","epoch":"e2"}`), `reset to epoch "e2" has no since`},
		{"event no seq", false, websocket.MessageText, []byte(`{"type":"event","event":"progress","data":{}}`), `event "progress" has no seq`},
		{"event seq 0", false, websocket.MessageText, []byte(`{"type":"event","seq":0,"event":"progress","data":{}}`), `event "progress" has no seq`},
		{"event no name", false, websocket.MessageText, []byte(`{"type":"event","seq":4,"data":{}}`), "event 4 has no name"},
		{"comfy image type", true, websocket.MessageBinary, comfy, "image type 9"},
		{"comfy short", true, websocket.MessageBinary, []byte{0, 0, 0, 1}, "shorter than its 32-byte header"},
		{"comfy text", true, websocket.MessageText, []byte(`[1]`), "comfydeploy text message"},
		{"comfy no event", true, websocket.MessageText, []byte(`{"data":{}}`), "has no event"},
		{"comfy no data", true, websocket.MessageText, []byte(`{"event":"progress"}`), `event "progress": data is not an object`},
		{"comfy data array", true, websocket.MessageText, []byte(`{"event":"progress","data":[1]}`), `event "progress": data is not an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
				send(t, ws, tt.typ, tt.msg)
				if tt.comfy {
					send(t, ws, websocket.MessageText, wire.Status("s"))
				} else {
					sendControl(t, ws, wire.Control{Type: wire.TypeLive})
				}
			})
			c, err := Dial(t.Context(), Config{URL: g.URL, OutputID: "demo", ComfyDeploy: tt.comfy})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Next(t.Context())
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v; want ErrMalformed", err)
			}
			contains(t, err, tt.want)
			if _, err := c.Next(t.Context()); err != nil {
				t.Fatalf("next after a malformed message: got %v; want the next message", err)
			}
		})
	}
}

func TestReadLimit(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		send(t, ws, websocket.MessageBinary, nativeFrame(1))
	})
	c, err := Dial(t.Context(), Config{URL: g.URL, OutputID: "demo", ReadLimit: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Next(t.Context())
	contains(t, err, "message too big")
}

func TestRejected(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"401 json", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"token expired"}}`))
		}, "HTTP 401: unauthorized: token expired"},
		{"400 text", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "output_id is empty", http.StatusBadRequest)
		}, "HTTP 400: output_id is empty"},
		{"close 1008", func(w http.ResponseWriter, r *http.Request) {
			ws, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			ws.Close(wire.ClosePolicy, "may not watch demo")
		}, "may not watch demo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handler)
			s, err := NewStream(StreamConfig{Config: Config{URL: srv.URL, OutputID: "demo"}})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Run(t.Context(), func(context.Context, Message) error { return nil })
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("got %v; want ErrRejected", err)
			}
			contains(t, err, tt.want)
		})
	}
}

func TestHandshakeOtherStatus(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such route", http.StatusNotFound)
	})
	_, err := Dial(t.Context(), Config{URL: srv.URL, OutputID: "demo"})
	if err == nil || errors.Is(err, ErrRejected) {
		t.Fatalf("got %v; want a dial error that is not ErrRejected", err)
	}
	contains(t, err, "HTTP 404: no such route")
}

func next(t *testing.T, c *Conn) Message {
	t.Helper()
	m, err := c.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func FuzzDecode(f *testing.F) {
	f.Add(false, true, nativeFrame(1))
	f.Add(false, false, wire.EncodeControl(wire.Control{Type: wire.TypeGap, From: 1, To: 2}))
	f.Add(true, false, wire.Status("x"))
	f.Add(true, false, []byte(`{"event":"progress","data":{"value":1,"max":2}}`))
	f.Add(false, false, wire.EncodeControl(wire.Control{Type: wire.TypeEvent, Seq: u64(3), Event: "executing", Data: []byte(`{"node":null}`)}))
	b, _ := wire.EncodeComfy("demo", frame.WEBP, []byte("RIFF"))
	f.Add(true, true, b)
	f.Fuzz(func(t *testing.T, comfy, binary bool, b []byte) {
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		m, err := (&Conn{comfy: comfy}).decode(typ, b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v; want ErrMalformed", err)
			}
			return
		}
		if f, ok := m.(*Frame); ok && !f.Format.Valid() {
			t.Fatalf("frame with format %d", f.Format)
		}
		if c, ok := m.(*Control); ok && c.Type == wire.TypeEvent && (c.Event == "" || !comfy && (c.Seq == nil || *c.Seq == 0)) {
			t.Fatalf("event %+v without a name or, on native, a seq", c)
		}
	})
}
