package browser_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/services/gateway"
	"github.com/framecast/framecast/services/gateway/web/webtest"
	"github.com/framecast/framecast/services/producer"
	"github.com/framecast/framecast/shared/natsembed"
)

// published is one frame of the producer's 200 response.
type published struct {
	Seq         uint64 `json:"seq"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
}

// shown is one record of the viewer's window.__frames.
type shown struct {
	Seq           uint64 `json:"seq"`
	ContentType   string `json:"contentType"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	NaturalWidth  int    `json:"naturalWidth"`
	NaturalHeight int    `json:"naturalHeight"`
	Gateway       string `json:"gateway"`
	Error         string `json:"error"`
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(x * 3), uint8(y * 5), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// publish posts one w×h PNG for output x, re-encoded by the producer as
// file_type, and returns what the producer says it published.
func publish(t *testing.T, base string, w, h int, fileType string) published {
	t.Helper()
	res, err := http.Post(base+"/v1/outputs/x/images?file_type="+fileType, "image/png", bytes.NewReader(pngOf(t, w, h)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Frames []published `json:"frames"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK || len(body.Frames) != 1 {
		t.Fatalf("publish %dx%d: status %d, %v, %+v; want 200 and one frame", w, h, res.StatusCode, err, body)
	}
	return body.Frames[0]
}

func waitReady(t *testing.T, name string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(webtest.WaitTimeout)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v", name, webtest.WaitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpReady(base string) func() bool {
	return func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
}

// site is a producer and a gateway serving the viewer on one origin, as
// in the all-in-one command, on an embedded NATS server.
type site struct {
	t       *testing.T
	natsURL string
	logger  *slog.Logger
	prod    *producer.Server
	gwA     *gateway.Server
	srvA    *httptest.Server // gateway a, with the producer's API mounted
}

func newSite(t *testing.T) *site {
	t.Helper()
	ctx := t.Context()
	s := &site{t: t, logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	s.natsURL = ns.ClientURL()

	// The producer applies the stream on this server of the test's own;
	// the gateways verify it.
	s.prod, err = producer.New(ctx, producer.Config{NATSURL: s.natsURL, EnsureStream: true, Logger: s.logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.prod.Close() })
	s.gwA = s.gateway("a")
	mux := http.NewServeMux()
	mux.Handle("/v1/outputs/", s.prod.Handler())
	mux.Handle("/", s.gwA.Handler())
	s.srvA = httptest.NewServer(mux)
	t.Cleanup(s.srvA.Close)
	waitReady(t, "producer", s.prod.Ready)
	waitReady(t, "gateway a", httpReady(s.srvA.URL))
	return s
}

// gateway starts another gateway with the viewer on the site's NATS.
func (s *site) gateway(id string) *gateway.Server {
	s.t.Helper()
	gw, err := gateway.New(s.t.Context(), gateway.Config{
		NATSURL: s.natsURL, ID: id, AllowAnonymous: true, Viewer: true, Logger: s.logger,
		// The page comes from gateway a; others must accept its Origin.
		AllowedOrigins: []string{"127.0.0.1:*"},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { gw.Close() })
	return gw
}

// TestViewer opens the viewer that gateway A serves (the producer mounted on
// the same origin, as in the all-in-one command) with gateways A and B in
// its URL list, and checks that frames published through the producer show
// up decoded at their size, by the page's own "send test image" button too;
// then drains A and checks that every frame published meanwhile shows up,
// through B, none missing and none twice.
func TestViewer(t *testing.T) {
	browser := webtest.Browser(t)
	ctx := t.Context()
	site := newSite(t)
	gwA, srvA := site.gwA, site.srvA
	gwB := site.gateway("b")
	srvB := httptest.NewServer(gwB.Handler())
	t.Cleanup(srvB.Close)
	srvP := httptest.NewServer(site.prod.Handler())
	t.Cleanup(srvP.Close)
	waitReady(t, "gateway b", httpReady(srvB.URL))

	q := url.Values{"output_id": {"x"}, "autoconnect": {"1"}, "gateways": {srvA.URL + "," + srvB.URL}}
	page := webtest.Open(t, browser, srvA.URL+"/?"+q.Encode())
	page.Wait(`window.__log.some((l) => l.kind === "hello")`, `JSON.stringify(window.__log)`)

	// The page's own button: a random-size gradient POSTed to /v1/outputs/x/images
	// on its origin, re-encoded as WEBP.
	webtest.Eval[bool](page, `(document.getElementById("send").click(), true)`)
	page.Wait(`window.__log.some((l) => l.kind === "send") && window.__frames.some((f) => f.naturalWidth)`,
		`JSON.stringify({log: window.__log, frames: window.__frames})`)
	sent := webtest.Eval[string](page, `window.__log.find((l) => l.kind === "send").detail.size`)
	first := webtest.Eval[[]shown](page, `window.__frames`)
	if got := fmt.Sprintf("%s %dx%d", first[0].ContentType, first[0].NaturalWidth, first[0].NaturalHeight); got != "image/webp "+sent {
		t.Errorf("test image shown as %s; want image/webp %s", got, sent)
	}

	want := map[uint64]published{}
	for _, size := range [][2]int{{64, 48}, {80, 60}} {
		p := publish(t, srvP.URL, size[0], size[1], "png")
		want[p.Seq] = p
	}
	waitShown(t, page, want)

	// Drain A: the page's socket closes with 1001 and the client fails over
	// to B with since=<last seq>. Frames published meanwhile must all arrive.
	drainCtx, cancel := context.WithTimeout(ctx, webtest.WaitTimeout)
	defer cancel()
	if err := gwA.Drain(drainCtx); err != nil {
		t.Fatalf("drain gateway a: %v", err)
	}
	srvA.Close()
	after := map[uint64]published{}
	for i := range 6 {
		p := publish(t, srvP.URL, 64+16*(i%2), 48+12*(i%2), []string{"png", "webp", "jpeg"}[i%3])
		want[p.Seq], after[p.Seq] = p, p
	}
	got := waitShown(t, page, want)
	for _, s := range got {
		if _, ok := after[s.Seq]; ok && s.Gateway != srvB.URL {
			t.Errorf("frame %d came through %s; want gateway b %s", s.Seq, s.Gateway, srvB.URL)
		}
	}
	closes := webtest.Eval[[]int](page, `window.__log.filter((l) => l.kind === "close").map((l) => l.detail.code)`)
	if !slices.Contains(closes, 1001) {
		t.Errorf("close codes %v; want a 1001 from the drain", closes)
	}
	if state := webtest.Eval[string](page, `document.getElementById("state").dataset.state`); state != "open" {
		t.Errorf("viewer state %q; want open", state)
	}
	if path := os.Getenv("FRAMECAST_VIEWER_SCREENSHOT"); path != "" {
		page.Screenshot(path)
	}
}

// waitShown waits until the viewer shows a decoded image for every frame in
// want, then checks each one's type and decoded size, and that no frame
// shows twice. It returns the viewer's records.
func waitShown(t *testing.T, page *webtest.Page, want map[uint64]published) []shown {
	t.Helper()
	seqs := make([]uint64, 0, len(want))
	for s := range want {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	js, _ := json.Marshal(seqs)
	page.Wait(fmt.Sprintf(`%s.every((s) => window.__frames.some((f) => f.seq === s && (f.naturalWidth || f.error)))`, js),
		fmt.Sprintf(`JSON.stringify({want: %s, frames: window.__frames.map((f) => f.seq), log: window.__log.slice(-20)})`, js))
	got := webtest.Eval[[]shown](page, `window.__frames`)
	seen := map[uint64]int{}
	for _, s := range got {
		seen[s.Seq]++
		p, ok := want[s.Seq]
		if !ok {
			continue
		}
		if g, w := fmt.Sprintf("%s %dx%d decoded %dx%d %s", s.ContentType, s.Width, s.Height, s.NaturalWidth, s.NaturalHeight, s.Error),
			fmt.Sprintf("%s %dx%d decoded %dx%d ", p.ContentType, p.Width, p.Height, p.Width, p.Height); g != w {
			t.Errorf("frame %d: %s; want %s", s.Seq, g, w)
		}
	}
	var dups []string
	for s, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%d×%d", s, n))
		}
	}
	if len(dups) > 0 {
		t.Errorf("frames shown more than once: %s", strings.Join(dups, ", "))
	}
	return got
}
