package frame

import (
	"fmt"
	"strings"
)

// Format is an image encoding. Its numeric value is the seed node's image
// type in the ComfyDeploy wire frame (1 JPEG, 2 PNG, 3 WEBP), so it must
// never be renumbered.
type Format uint32

// The formats the seed node produces.
const (
	JPEG Format = 1
	PNG  Format = 2
	WEBP Format = 3
)

// ParseFormat reads a file_type as the HTTP API and the seed node accept it:
// "webp", "png" or "jpeg" in any case ("jpg" is taken as "jpeg").
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "webp":
		return WEBP, nil
	case "png":
		return PNG, nil
	case "jpeg", "jpg":
		return JPEG, nil
	}
	return 0, fmt.Errorf("%w: file_type %q is unknown; allowed: webp, png, jpeg", ErrInvalid, s)
}

// FormatOf returns the format whose media type is contentType.
func FormatOf(contentType string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(contentType)) {
	case "image/webp":
		return WEBP, nil
	case "image/png":
		return PNG, nil
	case "image/jpeg", "image/jpg":
		return JPEG, nil
	}
	return 0, fmt.Errorf("%w: content type %q is not an image type; allowed: image/webp, image/png, image/jpeg", ErrInvalid, contentType)
}

// Valid reports whether f is one of JPEG, PNG, WEBP.
func (f Format) Valid() bool { return f >= JPEG && f <= WEBP }

// ContentType is the media type of f, e.g. "image/webp".
func (f Format) ContentType() string {
	switch f {
	case JPEG:
		return "image/jpeg"
	case PNG:
		return "image/png"
	case WEBP:
		return "image/webp"
	}
	return "application/octet-stream"
}

// String is the lower-case file_type name of f.
func (f Format) String() string {
	switch f {
	case JPEG:
		return "jpeg"
	case PNG:
		return "png"
	case WEBP:
		return "webp"
	}
	return fmt.Sprintf("format(%d)", uint32(f))
}
