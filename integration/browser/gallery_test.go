package browser_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/framecast/framecast/services/gateway/web/webtest"
)

// EnvGalleryScreenshot names the file TestGallery saves its screenshot
// to (make gallery-screenshot sets it to docs/gallery.png).
const EnvGalleryScreenshot = "FRAMECAST_GALLERY_SCREENSHOT"

// publishPreviews posts one w×h PNG for output g with previews=side and
// returns what the producer says it published: a preview, then the image.
func publishPreviews(t *testing.T, base string, w, h, side int) []published {
	t.Helper()
	u := fmt.Sprintf("%s/v1/outputs/g/images?file_type=jpeg&previews=%d", base, side)
	res, err := http.Post(u, "image/png", bytes.NewReader(pngOf(t, w, h)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Frames []published `json:"frames"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK || len(body.Frames) != 2 {
		t.Fatalf("publish %dx%d: status %d, %v, %+v; want 200, a preview and its image", w, h, res.StatusCode, err, body)
	}
	return body.Frames
}

// tile is one tile of the gallery as the test reads it.
type tile struct {
	Seq          uint64 `json:"seq"`
	Rendition    string `json:"rendition"`
	NaturalWidth int    `json:"naturalWidth"`
	Caption      string `json:"caption"`
	Full         bool   `json:"full"`
}

const readTiles = `window.__tiles.map((t) => ({seq: t.seq, rendition: t.rendition, naturalWidth: t.img.naturalWidth,
  caption: t.fig.querySelector("figcaption").textContent, full: t.fig.dataset.full === "1"}))`

// TestGallery: the gallery opened with ?output_id=g&last=4 after six
// images were published with previews shows the last four at once, newest
// first, as previews really rendered by the browser (naturalWidth > 0)
// with seq, size, type and latency; a click opens the full image; an
// image published later comes first, live.
func TestGallery(t *testing.T) {
	browser := webtest.Browser(t)
	site := newSite(t)
	var images [][]published
	for i := range 6 {
		images = append(images, publishPreviews(t, site.srvA.URL, 320+32*i, 240, 96))
	}
	page := webtest.Open(t, browser, site.srvA.URL+"/?output_id=g&last=4")
	page.Wait(`window.__tiles.length === 4 && window.__tiles.every((t) => t.img.complete && t.img.naturalWidth > 0 && t.fig.dataset.full === "1")`,
		`JSON.stringify({tiles: `+readTiles+`, log: window.__log})`)
	got := webtest.Eval[[]tile](page, readTiles)
	for i, g := range got {
		img := images[len(images)-1-i] // newest first
		p, f := img[0], img[1]
		want := fmt.Sprintf("#%d [0] webp %dx%d ", p.Seq, p.Width, p.Height)
		if g.Seq != p.Seq || g.Rendition != "preview" || g.NaturalWidth != 96 || !g.Full || !bytes.HasPrefix([]byte(g.Caption), []byte(want)) {
			t.Errorf("tile %d: %+v; want the preview %d (full %d), 96 wide, with a caption starting %q", i, g, p.Seq, f.Seq, want)
		}
	}
	if n := webtest.Eval[int](page, `window.__frames.length`); n != 8 {
		t.Errorf("page received %d frames; want 8: four previews and their images", n)
	}
	if state := webtest.Eval[string](page, `document.getElementById("state").dataset.state`); state != "open" {
		t.Errorf("connection state %q; want open", state)
	}

	// A click opens the full image.
	webtest.Eval[bool](page, `(window.__tiles[0].fig.click(), true)`)
	page.Wait(`document.getElementById("lightbox").open && document.getElementById("full").naturalWidth > 0`, `document.getElementById("full-caption").textContent`)
	if w := webtest.Eval[int](page, `document.getElementById("full").naturalWidth`); w != images[5][1].Width {
		t.Errorf("full image %d wide; want %d", w, images[5][1].Width)
	}
	webtest.Eval[bool](page, `(document.getElementById("lightbox").close(), true)`)

	// Live: the next image comes first.
	next := publishPreviews(t, site.srvA.URL, 200, 150, 96)
	page.Wait(fmt.Sprintf(`window.__tiles[0].seq === %d && window.__tiles[0].img.naturalWidth > 0`, next[0].Seq), `JSON.stringify(`+readTiles+`)`)
	if path := os.Getenv(EnvGalleryScreenshot); path != "" {
		page.Screenshot(path)
	}
}
