package producer

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/stream"
)

// noisyPNG is a PNG of random pixels, so it barely compresses.
func noisyPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range m.Pix {
		m.Pix[i] = uint8(r.UintN(256))
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestLargeFrame(t *testing.T) {
	e := newEnv(t, Config{InlineLimit: 64 << 10, MaxFrameBytes: 200 << 10})
	ctx := context.Background()
	large := noisyPNG(t, 300, 300) // ~90 KB
	r := e.post(t, "o", "", "image/png", large, nil)
	if r.status != http.StatusOK || len(r.ok.Frames) != 1 || r.ok.Frames[0].Bytes != len(large) {
		t.Fatalf("got %d %s; want 200 with one frame of %d bytes", r.status, r.raw, len(large))
	}
	msg, err := e.st.GetMsg(ctx, r.ok.Frames[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	m, err := frame.Decode(msg.Header)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Data) != 0 || m.Object == "" {
		t.Fatalf("stored message has %d bytes and object %q; want a reference", len(msg.Data), m.Object)
	}
	c, _ := stream.Config{}.WithDefaults()
	obs, err := e.js.ObjectStore(ctx, c.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(ctx, m.Object)
	if err != nil || !bytes.Equal(got, large) {
		t.Fatalf("object %q: %d bytes, %v; want the posted image", m.Object, len(got), err)
	}

	huge := noisyPNG(t, 500, 500) // ~250 KB
	r = e.post(t, "o", "", "image/png", huge, nil)
	if r.status != http.StatusRequestEntityTooLarge || r.err.Error.Code != CodeFrameTooLarge || !strings.Contains(r.err.Error.Message, "the largest frame is 204800 bytes") {
		t.Fatalf("got %d %s; want 413 frame_too_large stating the 204800-byte limit", r.status, r.raw)
	}
}
