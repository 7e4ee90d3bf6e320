package frame

import "fmt"

// Rendition says which version of an image a frame carries. The zero
// value is Full, so frames published before renditions existed (no
// HeaderRendition) are full frames.
type Rendition uint8

const (
	// Full is the image as it was published.
	Full Rendition = iota
	// Preview is a small copy of a full frame's image (its longest side
	// at most what the publish asked for), published on the same subject
	// just before that full frame.
	Preview
)

// String is the rendition's name on the wire: "full" or "preview".
func (r Rendition) String() string {
	switch r {
	case Full:
		return "full"
	case Preview:
		return "preview"
	}
	return fmt.Sprintf("rendition(%d)", uint8(r))
}

// ParseRendition reads a rendition name; "" is Full.
func ParseRendition(s string) (Rendition, error) {
	switch s {
	case "", "full":
		return Full, nil
	case "preview":
		return Preview, nil
	}
	return 0, fmt.Errorf("%w: rendition %q is unknown; allowed: full, preview", ErrInvalid, s)
}
