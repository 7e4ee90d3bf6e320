package cli

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTailRendition: publish --previews publishes each image's preview
// before it; tail prints the rendition of each frame and, with
// --rendition, takes previews only or both.
func TestTailRendition(t *testing.T) {
	url := startStack(t)
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 64, 48))); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a.png")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := runMain(t, ExitOK, "publish", "--producer-url", url, "--output-id", "demo", "--type", "png", "--previews", "32", file)
	if !strings.Contains(out, "seq=1 index=0 type=image/webp size=32x24 ") || !strings.Contains(out, "rendition=preview file="+file) ||
		!strings.Contains(out, "seq=2 index=0 type=image/png size=64x48 ") || !strings.Contains(out, "rendition=full file="+file) {
		t.Fatalf("publish printed %q; want the preview (seq 1) and the image (seq 2)", out)
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
