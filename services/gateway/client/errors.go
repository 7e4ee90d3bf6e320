package client

import (
	"errors"

	"github.com/framecast/framecast/shared/wire"
)

var (
	// ErrInvalidConfig is wrapped by every Config and StreamConfig error.
	ErrInvalidConfig = errors.New("invalid client config")

	// ErrRejected is wrapped when a gateway refused the subscription itself
	// (HTTP 400, 401 or 403 on the handshake, or close code 1008): trying
	// again with the same Config cannot succeed, so Stream.Run returns it.
	ErrRejected = errors.New("gateway rejected the subscription")

	// ErrMalformed is wire.ErrMalformed: a message from the gateway could not
	// be decoded.
	ErrMalformed = wire.ErrMalformed
)
