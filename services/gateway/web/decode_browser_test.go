package web_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/framecast/framecast/services/gateway/web"
	"github.com/framecast/framecast/services/gateway/web/webtest"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// decodeHarness decodes every case with framecast.js, once from a whole
// ArrayBuffer and once from a Uint8Array view at an offset inside a larger
// buffer, and reports what it got (or the error it threw).
const decodeHarness = `(async (cases) => {
  const m = await import("/framecast.js");
  const b64 = (u8) => { let s = ""; for (const c of u8) s += String.fromCharCode(c); return btoa(s); };
  const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const run = (fn, data) => {
    try {
      const r = fn(data);
      const out = { ok: true, image: b64(r.image) };
      if (r.header) out.header = r.header;
      else Object.assign(out, { event: r.event, imageType: r.imageType, contentType: r.contentType, outputId: r.outputId });
      return out;
    } catch (e) {
      return { ok: false, error: String(e.message) };
    }
  };
  return cases.map((c) => {
    const fn = c.kind === "native" ? m.decodeNative : m.decodeComfy;
    const b = bytes(c.data);
    const whole = run(fn, b.slice().buffer);
    const big = new Uint8Array(b.length + 7);
    big.set(b, 3);
    const view = run(fn, big.subarray(3, 3 + b.length));
    return { whole, viewAgrees: JSON.stringify(whole) === JSON.stringify(view) };
  });
})`

type jsDecoded struct {
	OK          bool            `json:"ok"`
	Error       string          `json:"error"`
	Image       string          `json:"image"`
	Header      json.RawMessage `json:"header"`
	Event       uint32          `json:"event"`
	ImageType   uint32          `json:"imageType"`
	ContentType string          `json:"contentType"`
	OutputID    string          `json:"outputId"`
}

type decodeCase struct {
	name string
	kind string // "native" or "comfy"
	data []byte
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func decodeCases() []decodeCase {
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	meta := frame.Meta{OutputID: "o.1 *>", ClientID: "client %x", Format: frame.WEBP, Width: 640, Height: 480, BatchIndex: 2, BatchSize: 4, Timestamp: 1_700_000_000_123}
	comfyOK := must(wire.EncodeComfy("abc", frame.PNG, []byte("x")))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return []decodeCase{
		{"native small", "native", wire.EncodeNative(wire.HeaderOf(17, meta), []byte("image"))},
		{"native 300 KiB image", "native", wire.EncodeNative(wire.HeaderOf(1<<40, meta), big)},
		{"native empty image", "native", wire.EncodeNative(wire.Header{Seq: 1, OutputID: "o", ContentType: "image/png"}, nil)},
		{"native empty", "native", nil},
		{"native short", "native", []byte{0, 0}},
		{"native length past end", "native", []byte{0, 0, 0, 9, '{', '}'}},
		{"native length over limit", "native", cat([]byte{0, 0, 0x10, 0x01}, bytes.Repeat([]byte(" "), 4097))},
		{"native header not json", "native", []byte{0, 0, 0, 2, 'x', 'y'}},
		{"native header an array", "native", []byte{0, 0, 0, 3, '[', '1', ']'}},
		{"comfy webp", "comfy", must(wire.EncodeComfy("output_id", frame.WEBP, []byte("RIFF....WEBP")))},
		{"comfy jpeg full width id", "comfy", must(wire.EncodeComfy("abcdefghijklmnopqrstuvwx", frame.JPEG, big))},
		{"comfy png empty image", "comfy", must(wire.EncodeComfy("x.y", frame.PNG, nil))},
		{"comfy short", "comfy", comfyOK[:31]},
		{"comfy event 2", "comfy", cat([]byte{0, 0, 0, 2}, comfyOK[4:])},
		{"comfy image type 4", "comfy", cat(comfyOK[:4], []byte{0, 0, 0, 4}, comfyOK[8:])},
		{"comfy image type 0", "comfy", cat(comfyOK[:4], []byte{0, 0, 0, 0}, comfyOK[8:])},
		{"comfy junk after padding", "comfy", cat(comfyOK[:20], []byte{'z'}, comfyOK[21:])},
		{"comfy empty id", "comfy", cat(comfyOK[:8], make([]byte, 24))},
		{"comfy id not ascii", "comfy", cat(comfyOK[:8], []byte{'a', 0xC3}, make([]byte, 22))},
		{"comfy id control char", "comfy", cat(comfyOK[:8], []byte{'a', '\n'}, make([]byte, 22))},
	}
}

// TestDecodersInBrowser decodes the same bytes with package wire and with
// framecast.js in Chromium and requires the same outcome: the same header,
// output id, image type and image bytes, or an error from both.
func TestDecodersInBrowser(t *testing.T) {
	browser := webtest.Browser(t)
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	page := webtest.Open(t, browser, srv.URL+"/")

	cases := decodeCases()
	type jsCase struct {
		Kind string `json:"kind"`
		Data string `json:"data"`
	}
	in := make([]jsCase, len(cases))
	for i, c := range cases {
		in[i] = jsCase{c.kind, base64.StdEncoding.EncodeToString(c.data)}
	}
	arg, _ := json.Marshal(in)
	type result struct {
		Whole      jsDecoded `json:"whole"`
		ViewAgrees bool      `json:"viewAgrees"`
	}
	got := webtest.Eval[[]result](page, decodeHarness+"("+string(arg)+")")
	if len(got) != len(cases) {
		t.Fatalf("got %d results; want %d", len(got), len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			js := got[i].Whole
			if !got[i].ViewAgrees {
				t.Errorf("decoding a Uint8Array view at an offset differs from decoding the whole buffer")
			}
			image, _ := base64.StdEncoding.DecodeString(js.Image)
			switch c.kind {
			case "native":
				h, img, err := wire.DecodeNative(c.data)
				if err != nil || !js.OK {
					if (err == nil) != js.OK {
						t.Fatalf("go error %v; js ok=%v error %q; want both to fail or both to succeed", err, js.OK, js.Error)
					}
					if !strings.HasPrefix(js.Error, "malformed message: ") {
						t.Errorf("js error %q; want it to start with %q", js.Error, "malformed message: ")
					}
					return
				}
				var jh wire.Header
				if err := json.Unmarshal(js.Header, &jh); err != nil {
					t.Fatalf("js header %s: %v", js.Header, err)
				}
				if jh != h {
					t.Errorf("header %+v; want %+v", jh, h)
				}
				if !bytes.Equal(image, img) {
					t.Errorf("image of %d bytes; want %d bytes equal to the frame's", len(image), len(img))
				}
			case "comfy":
				f, err := wire.DecodeComfy(c.data)
				if err != nil || !js.OK {
					if (err == nil) != js.OK {
						t.Fatalf("go error %v; js ok=%v error %q; want both to fail or both to succeed", err, js.OK, js.Error)
					}
					return
				}
				want := fmt.Sprintf("event %d type %d %s id %q", f.Event, f.Format, f.Format.ContentType(), f.OutputID)
				if g := fmt.Sprintf("event %d type %d %s id %q", js.Event, js.ImageType, js.ContentType, js.OutputID); g != want {
					t.Errorf("got %s; want %s", g, want)
				}
				if !bytes.Equal(image, f.Image) {
					t.Errorf("image of %d bytes; want %d bytes equal to the frame's", len(image), len(f.Image))
				}
			}
		})
	}
}

// TestHelpersInBrowser checks the URL builder, the control parser and the
// backoff of framecast.js.
func TestHelpersInBrowser(t *testing.T) {
	browser := webtest.Browser(t)
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	page := webtest.Open(t, browser, srv.URL+"/")

	urls := []struct {
		name, base, opts, want string
	}{
		{"native http", "http://gw:8080", `{outputId: "o", clientId: "c"}`, "ws://gw:8080/v1/ws?output_id=o&client_id=c"},
		{"native https with prefix and since", "https://gw/edge/", `{outputId: "a b", since: 42, last: 3, token: "t.k"}`, "wss://gw/edge/v1/ws?output_id=a+b&since=42&token=t.k"},
		{"native last", "ws://gw", `{outputId: "o", last: 5}`, "ws://gw/v1/ws?output_id=o&last=5"},
		{"native since and epoch", "http://gw", `{outputId: "o", since: 0, epoch: "2026-11-30T19:53:55Z &x"}`, "ws://gw/v1/ws?output_id=o&since=0&epoch=2026-11-30T19%3A53%3A55Z+%26x"},
		{"epoch only with since", "http://gw", `{outputId: "o", last: 2, epoch: "e1"}`, "ws://gw/v1/ws?output_id=o&last=2"},
		{"comfydeploy since and epoch", "http://gw", `{endpoint: "comfydeploy", clientId: "c1", since: 3, epoch: "e1"}`, "ws://gw/comfyui-deploy/ws?clientId=c1&since=3&epoch=e1"},
		{"comfydeploy", "https://gw", `{endpoint: "comfydeploy", clientId: "c1", token: "t"}`, "wss://gw/comfyui-deploy/ws?clientId=c1&token=t"},
		{"relative to the page", "/", `{outputId: "o"}`, strings.Replace(srv.URL, "http://", "ws://", 1) + "/v1/ws?output_id=o"},
		{"bad scheme", "ftp://gw", `{outputId: "o"}`, "error: gateway URL ftp://gw has scheme ftp:; allowed: http, https, ws, wss"},
		{"bad endpoint", "http://gw", `{endpoint: "sse", outputId: "o"}`, `error: endpoint "sse" is unknown; allowed: native, comfydeploy`},
		{"native previews", "http://gw", `{outputId: "o", last: 4, rendition: "preview"}`, "ws://gw/v1/ws?output_id=o&rendition=preview&last=4"},
		{"native both renditions", "http://gw", `{outputId: "o", rendition: "all"}`, "ws://gw/v1/ws?output_id=o&rendition=all"},
		{"native full is the default", "http://gw", `{outputId: "o", rendition: "full"}`, "ws://gw/v1/ws?output_id=o"},
		{"bad rendition", "http://gw", `{outputId: "o", rendition: "thumb"}`, `error: rendition "thumb" is unknown; allowed: full, preview, all`},
		{"comfydeploy previews", "http://gw", `{endpoint: "comfydeploy", rendition: "preview"}`, "error: rendition preview does not apply to the comfydeploy endpoint, which sends full images only"},
	}
	for _, tt := range urls {
		t.Run("socketURL "+tt.name, func(t *testing.T) {
			expr := fmt.Sprintf(`import("/framecast.js").then((m) => { try { return m.socketURL(%q, %s); } catch (e) { return "error: " + e.message; } })`, tt.base, tt.opts)
			if got := webtest.Eval[string](page, expr); got != tt.want {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}

	refusals := []struct {
		name, opts, want string
	}{
		{"no urls", `{urls: [], outputId: "o"}`, "urls is empty"},
		{"no output id", `{urls: "http://gw"}`, "outputId is required for the native endpoint"},
		{"bad scheme", `{urls: "ftp://gw", outputId: "o"}`, "gateway URL ftp://gw has scheme ftp:"},
		{"bad endpoint", `{urls: "http://gw", endpoint: "sse", outputId: "o"}`, `endpoint "sse" is unknown`},
		{"epoch without since", `{urls: "http://gw", outputId: "o", epoch: "e1"}`, "epoch is set without since"},
	}
	for _, tt := range refusals {
		t.Run("FramecastClient refuses "+tt.name, func(t *testing.T) {
			expr := fmt.Sprintf(`import("/framecast.js").then((m) => { try { new m.FramecastClient(%s); return "no error"; } catch (e) { return "error: " + e.message; } })`, tt.opts)
			if got := webtest.Eval[string](page, expr); !strings.HasPrefix(got, "error: "+tt.want) {
				t.Errorf("got %s; want an error starting %q", got, tt.want)
			}
		})
	}

	controls := []struct {
		name, text, want string
	}{
		{"hello", string(wire.EncodeControl(wire.Control{Type: wire.TypeHello, Gateway: "g1", OutputID: "o", Since: new(uint64(7))})), `{"type":"hello","gateway":"g1","output_id":"o","since":7}`},
		{"gap", string(wire.EncodeControl(wire.Control{Type: wire.TypeGap, From: 3, To: 9})), `{"type":"gap","from":3,"to":9}`},
		{"reset", string(wire.EncodeControl(wire.Control{Type: wire.TypeReset, Epoch: "e2", Since: new(uint64(0)), Message: "m"})), `{"type":"reset","since":0,"epoch":"e2","message":"m"}`},
		{"live at 0", string(wire.EncodeControl(wire.Control{Type: wire.TypeLive, Seq: new(uint64(0))})), `{"type":"live","seq":0}`},
		{"status", string(wire.Status("sid-1")), `{"event":"status","data":{"sid":"sid-1"},"type":"status"}`},
		{"no type", `{"from":1}`, "error: malformed message: control message has no type"},
		{"array", `[1]`, "error: malformed message: control message is not a JSON object"},
		{"not json", `hello`, "error: malformed message: control message: "},
	}
	for _, tt := range controls {
		t.Run("decodeControl "+tt.name, func(t *testing.T) {
			expr := fmt.Sprintf(`import("/framecast.js").then((m) => { try { return JSON.stringify(m.decodeControl(%q)); } catch (e) { return "error: " + e.message; } })`, tt.text)
			got := webtest.Eval[string](page, expr)
			if !strings.HasPrefix(got, tt.want) || (!strings.HasPrefix(tt.want, "error") && got != tt.want) {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}

	backoff := []struct {
		name              string
		attempt, base, mx int
		random            string
		want              int
	}{
		{"first attempt, top of range", 0, 250, 15000, "0.999", 249},
		{"grows exponentially", 3, 250, 15000, "0.5", 1000},
		{"capped by max", 20, 250, 15000, "0.5", 7500},
		{"huge attempt stays finite", 5000, 250, 15000, "0.5", 7500},
		{"zero draw", 4, 250, 15000, "0", 0},
	}
	for _, tt := range backoff {
		t.Run("backoffDelay "+tt.name, func(t *testing.T) {
			expr := fmt.Sprintf(`import("/framecast.js").then((m) => m.backoffDelay(%d, %d, %d, () => %s))`, tt.attempt, tt.base, tt.mx, tt.random)
			if got := webtest.Eval[int](page, expr); got != tt.want {
				t.Errorf("got %d; want %d", got, tt.want)
			}
		})
	}
}
