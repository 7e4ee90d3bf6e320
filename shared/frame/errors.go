package frame

import "errors"

// ErrInvalid is wrapped by every error about malformed frame metadata or an
// unknown format.
var ErrInvalid = errors.New("invalid frame")
