package subject

import "errors"

// ErrInvalidID is wrapped by every id validation error.
var ErrInvalidID = errors.New("invalid id")

// ErrInvalidToken is wrapped by errors about a subject or token that no id
// escapes to.
var ErrInvalidToken = errors.New("invalid subject token")
