package wire

import "errors"

// ErrMalformed is wrapped by every decode error.
var ErrMalformed = errors.New("malformed message")
