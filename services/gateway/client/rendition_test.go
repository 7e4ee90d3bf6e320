package client

import (
	"context"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/frame"
)

// TestGatewayRenditions: through a real gateway, a connection gets the
// renditions it asks for, full frames by default, and last=n counts the
// images of its rendition (with "all", each image with its preview).
func TestGatewayRenditions(t *testing.T) {
	f := newFabric(t)
	tests := []struct {
		name      string
		rendition string
		last      int
		want      []string // images, in order
		renditons []string
	}{
		{"default", "", 2, []string{"f1", "f2"}, []string{"full", "full"}},
		{"full", "full", 1, []string{"f2"}, []string{"full"}},
		{"preview", "preview", 2, []string{"p1", "p2"}, []string{"preview", "preview"}},
		{"all", "all", 1, []string{"p2", "f2"}, []string{"preview", "full"}},
		{"all, both images", "all", 2, []string{"p1", "f1", "p2", "f2"}, []string{"preview", "full", "preview", "full"}},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oid := "o" + itoa(uint64(n))
			store := func(r frame.Rendition, w int, img string) uint64 {
				return f.Frame(frame.Meta{OutputID: oid, Format: frame.WEBP, Width: w, Height: w * 3 / 4, BatchSize: 1, Rendition: r}, []byte(img))
			}
			seqs := map[string]uint64{}
			for _, img := range []string{"p1", "f1", "p2", "f2"} {
				r := frame.Full
				if img[0] == 'p' {
					r = frame.Preview
				}
				seqs[img] = store(r, 512, img)
			}
			c, err := Dial(t.Context(), Config{URL: f.URL, OutputID: oid, Last: tt.last, Rendition: tt.rendition})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The timeout only bounds how long a connection that never
			// gets its frames takes to fail.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var got []*Frame
			for len(got) < len(tt.want) {
				m, err := c.Next(ctx)
				if err != nil {
					t.Fatalf("after %d frames: %v", len(got), err)
				}
				if fr, ok := m.(*Frame); ok {
					got = append(got, fr)
				}
			}
			for i, fr := range got {
				if img := tt.want[i]; fr.Seq != seqs[img] || string(fr.Image) != img || fr.Header.Rendition != tt.renditons[i] {
					t.Errorf("frame %d: seq %d image %q rendition %q; want seq %d image %q rendition %q",
						i, fr.Seq, fr.Image, fr.Header.Rendition, seqs[img], img, tt.renditons[i])
				}
			}
			// The next frame stored is the next one this connection gets:
			// nothing it does not take came in between.
			next := store(frame.Full, 64, "next")
			if tt.rendition == "preview" {
				next = store(frame.Preview, 64, "next preview")
			}
			for {
				m, err := c.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if fr, ok := m.(*Frame); ok {
					if fr.Seq != next {
						t.Fatalf("next frame: seq %d (%s); want %d", fr.Seq, fr.Header.Rendition, next)
					}
					break
				}
			}
		})
	}
}
