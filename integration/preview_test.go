package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/encode"
)

// TestPreviewRenditions: with real nats-server, producer and gateway
// processes, a publish with previews=128 of a 512×384 image gives a
// native socket with rendition=preview one image of longest side 128 and
// a default socket only the 512-wide frame; the next publish (previews=16
// of 64×48) shows that nothing else came in between.
func TestPreviewRenditions(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dial := func(rendition string) *client.Conn {
		c, err := client.Dial(ctx, client.Config{URL: s.gateways[0].URL, OutputID: "o", Rendition: rendition})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if m, err := c.Next(ctx); err != nil || m.(*client.Control).Type != "hello" {
			t.Fatalf("rendition %q: first message %v, %v; want hello", rendition, m, err)
		}
		return c
	}
	preview, full := dial("preview"), dial("")

	publish := func(w, h, side int) []uint64 {
		t.Helper()
		px := make([]byte, w*h*3)
		for i := range px {
			px[i] = byte(i)
		}
		u := fmt.Sprintf("%s/v1/outputs/o/images?file_type=png&width=%d&height=%d&channels=3&dtype=uint8&previews=%d", s.producer.URL, w, h, side)
		var r struct {
			Frames []struct {
				Seq       uint64 `json:"seq"`
				Rendition string `json:"rendition"`
			} `json:"frames"`
		}
		b := post(t, ctx, u, "application/octet-stream", px)
		if err := json.Unmarshal(b, &r); err != nil || len(r.Frames) != 2 || r.Frames[0].Rendition != "preview" || r.Frames[1].Rendition != "full" {
			t.Fatalf("producer answer %s; want a preview then its full frame (%v)", b, err)
		}
		return []uint64{r.Frames[0].Seq, r.Frames[1].Seq}
	}
	first := publish(512, 384, 128)
	second := publish(64, 48, 16)

	next := func(c *client.Conn, what string) (*client.Frame, encode.Info) {
		t.Helper()
		for {
			m, err := c.Next(ctx)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if f, ok := m.(*client.Frame); ok {
				in, err := encode.Probe(f.Image)
				if err != nil {
					t.Fatalf("%s: image does not decode: %v", what, err)
				}
				return f, in
			}
		}
	}
	tests := []struct {
		name          string
		c             *client.Conn
		seq           uint64
		rendition     string
		width, height int
	}{
		{"preview socket, first publish", preview, first[0], "preview", 128, 96},
		{"preview socket, second publish", preview, second[0], "preview", 16, 12},
		{"default socket, first publish", full, first[1], "full", 512, 384},
		{"default socket, second publish", full, second[1], "full", 64, 48},
	}
	for _, tt := range tests {
		f, in := next(tt.c, tt.name)
		if f.Seq != tt.seq || f.Header.Rendition != tt.rendition || in.Width != tt.width || in.Height != tt.height ||
			f.Header.Width != tt.width || f.Header.Height != tt.height {
			t.Errorf("%s: frame seq %d rendition %q, image %dx%d (header %dx%d); want seq %d rendition %q, %dx%d",
				tt.name, f.Seq, f.Header.Rendition, in.Width, in.Height, f.Header.Width, f.Header.Height, tt.seq, tt.rendition, tt.width, tt.height)
		}
	}
}
