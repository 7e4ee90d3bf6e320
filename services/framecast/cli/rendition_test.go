package cli

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestTailRendition: tail prints the rendition of each frame and, with
// --rendition, takes previews only or both.
func TestTailRendition(t *testing.T) {
	url := startStack(t)
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 64, 48))); err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(url+"/v1/outputs/demo/images?previews=32", "image/png", &b)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("publish: got %d %s; want 200", res.StatusCode, body)
	}
	tests := []struct {
		rendition string
		count     string
		want      []string
	}{
		{"full", "1", []string{"size=64x48 ", "rendition=full"}},
		{"preview", "1", []string{"type=webp size=32x24 ", "rendition=preview"}},
		{"all", "2", []string{"type=webp size=32x24 ", "rendition=preview", "type=png size=64x48 ", "rendition=full"}},
	}
	for _, tt := range tests {
		t.Run(tt.rendition, func(t *testing.T) {
			out, _ := runMain(t, ExitOK, "tail", "--gateway-url", url, "--output-id", "demo", "--since", "0", "--count", tt.count, "--rendition", tt.rendition)
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("tail printed %q; want %q in this order", out, tt.want)
				}
				rest = rest[i+len(w):]
			}
			if n := strings.Count(out, "seq="); n != len(tt.want)/2 {
				t.Fatalf("tail printed %d frames in %q; want %d", n, out, len(tt.want)/2)
			}
		})
	}
}
