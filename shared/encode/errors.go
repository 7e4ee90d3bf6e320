package encode

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error this package returns about its input wraps
// one of them, so callers can map them with errors.Is (for example to HTTP
// 400, 413 and 415).
var (
	// ErrInvalid is wrapped by errors about a bad quality, format or shape.
	ErrInvalid = errors.New("invalid image request")
	// ErrTooLarge is wrapped when an image is over MaxPixels or over a
	// format's side limit.
	ErrTooLarge = errors.New("image too large")
	// ErrUnsupported is wrapped by Probe when the bytes are not a JPEG, PNG
	// or WEBP image.
	ErrUnsupported = errors.New("unsupported image type")
	// ErrCorrupt is wrapped by Probe when an image does not decode.
	ErrCorrupt = errors.New("corrupt image")
)

// BatchError reports which image of a batch failed.
type BatchError struct {
	Index int // position in the batch, from 0
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("image %d: %v", e.Index, e.Err) }

func (e *BatchError) Unwrap() error { return e.Err }
