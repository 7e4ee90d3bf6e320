package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/natsembed"
	"github.com/framecast/framecast/shared/stream"
)

// env is a producer on an embedded NATS server behind a real HTTP server.
type env struct {
	ns   *server.Server
	srv  *Server
	http *httptest.Server
	js   jetstream.JetStream
	st   jetstream.Stream
}

func startNATS(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return newEnvOn(t, startNATS(t, t.TempDir(), 0), cfg)
}

// newEnvOn ensures cfg.Stream on the running NATS server ns, as a
// deployment's ensure step does, and starts a producer on it.
func newEnvOn(t testing.TB, ns *server.Server, cfg Config) *env {
	t.Helper()
	e := &env{ns: ns}
	cfg.NATSURL = e.ns.ClientURL()
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = 50 * time.Millisecond
	}
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if e.st, err = stream.Ensure(context.Background(), e.js, cfg.Stream); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(e.http.Close)
	waitReady(t, e.http.URL, true)
	return e
}

// waitReady polls /readyz until it reports ready (or not ready).
func waitReady(t testing.TB, base string, ready bool) {
	t.Helper()
	want := http.StatusServiceUnavailable
	if ready {
		want = http.StatusOK
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) count(t *testing.T) uint64 {
	t.Helper()
	info, err := e.st.Info(context.Background())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// escapeAll percent-encodes every byte outside [A-Za-z0-9_-], so any id
// travels as one path segment.
func escapeAll(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

type result struct {
	status int
	header http.Header
	ok     Response
	event  EventResponse // the 200 answer of eventsPath
	err    ErrorResponse
	raw    string
}

// post sends a publish request. seg is the escaped output_id segment, or
// a whole path when it starts with "/" (eventsPath).
func (e *env) post(t *testing.T, seg, query, ctype string, body []byte, hdr map[string]string) result {
	t.Helper()
	u := e.http.URL + "/v1/outputs/" + seg + "/images"
	if strings.HasPrefix(seg, "/") {
		u = e.http.URL + seg
	}
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	switch {
	case resp.StatusCode == http.StatusOK && seg == eventsPath:
		err = json.Unmarshal(b, &r.event)
	case resp.StatusCode == http.StatusOK:
		err = json.Unmarshal(b, &r.ok)
	default:
		err = json.Unmarshal(b, &r.err)
	}
	if err != nil {
		t.Fatalf("POST %s: status %d body %q is not the documented JSON: %v", u, resp.StatusCode, b, err)
	}
	return r
}

func testImage(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.NRGBA{uint8(x * 7), uint8(y * 5), uint8(x + y), 255})
		}
	}
	return m
}

func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testImage(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("body %q is not JSON: %v", b, err)
	}
}

// metrics is the text of the producer's /metrics.
func (e *env) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
