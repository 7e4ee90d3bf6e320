package producer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/natsurl"
	"github.com/framecast/framecast/shared/stream"
)

// ErrInvalidConfig is wrapped by every error New returns about its Config.
var ErrInvalidConfig = errors.New("invalid producer config")

// Defaults of Config's zero fields.
const (
	DefaultNATSURL        = "nats://127.0.0.1:4222"
	DefaultMaxBodyBytes   = 64 << 20
	DefaultPublishTimeout = 5 * time.Second
	DefaultReconnectWait  = time.Second
	DefaultRetryAfter     = 2 * time.Second
	// DefaultMaxInflightBytes is the memory budget of requests in flight.
	DefaultMaxInflightBytes = 1 << 30
	// DefaultMaxPixels is the largest image: encode.MaxPixels, 2^26.
	DefaultMaxPixels    = encode.MaxPixels
	DefaultOverloadWait = time.Second
	// DefaultReadTimeout bounds reading one request, headers and body;
	// DefaultIdleTimeout, how long an idle keep-alive connection stays
	// open. The producer's HTTP server (and framecast run's) uses them.
	DefaultReadTimeout = 2 * time.Minute
	DefaultIdleTimeout = time.Minute
)

// Config configures a Server. The zero value is the development default:
// NATS on 127.0.0.1:4222, the default stream, 64 MiB bodies, no auth.
type Config struct {
	// NATSURL is one NATS URL or a comma-separated list of a cluster's
	// URLs; default DefaultNATSURL.
	NATSURL string
	// Stream is the OUTPUTS stream the server verifies after each
	// connect: it is not ready while the stream or its bucket is missing
	// or differs.
	Stream stream.Config
	// EnsureStream makes the server create or update the stream and its
	// bucket to Stream after each connect instead of verifying them. That
	// needs the rights to change both streams, which only the admin user
	// of deploy/nats/accounts.conf holds (or a server without
	// authorization, as an embedded one); default off.
	EnsureStream bool
	// MaxBodyBytes bounds a request body; larger requests get 413. Default
	// 64 MiB. A raw float32 batch needs 16 bytes per RGBA pixel.
	MaxBodyBytes int64
	// MaxInflightBytes is one budget, for the whole process, of the memory
	// that requests hold at once: body bytes as they arrive (buffers grow
	// with them) and images while they are decoded and encoded. A request
	// that cannot get its share within OverloadWait gets 503 overloaded
	// with Retry-After; one that needs more than three quarters of the
	// budget gets 413. The last quarter is kept for requests that hold at
	// most 1/64 of the budget, so ordinary frames pass while large ones
	// wait. Default 1 GiB. The process's memory stays near this budget
	// plus its fixed needs (docs/reliability.md, "Hostile load").
	MaxInflightBytes int64
	// MaxPixels is the largest image, in pixels (width × height), that is
	// decoded or encoded; larger ones get 413 image_too_large before any
	// pixel is decoded. Default and most DefaultMaxPixels (2^26).
	MaxPixels int
	// OverloadWait is how long a request waits for its share of
	// MaxInflightBytes before 503 overloaded; default 1s.
	OverloadWait time.Duration
	// Tokens are the accepted static bearer tokens. Empty disables auth:
	// anyone who reaches the port can publish.
	Tokens []string
	// InlineLimit is the largest image sent inside its stream message;
	// larger ones go through the large-frame bucket (Stream.Bucket) by
	// reference. Default publish.DefaultInlineLimit (1 MiB), lowered to the
	// server's max_payload less 64 KiB; negative sends every frame inline.
	InlineLimit int64
	// MaxFrameBytes is the largest image; larger ones get 413
	// frame_too_large. Default publish.DefaultMaxFrame (32 MiB).
	MaxFrameBytes int64
	// PublishTimeout bounds the acknowledgement of each frame, a large
	// frame's upload included; default 5s.
	PublishTimeout time.Duration
	// ReconnectWait is the pause between NATS reconnect attempts; default 1s.
	ReconnectWait time.Duration
	// RetryAfter is the Retry-After sent with 503, rounded up to whole
	// seconds; default 2s.
	RetryAfter time.Duration
	// Registry receives the framecast_producer_* metrics; nil means a new
	// registry. Metrics already registered there make New fail.
	Registry *prometheus.Registry
	// Logger receives connection events and server errors; nil discards.
	Logger *slog.Logger
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.NATSURL == "" {
		c.NATSURL = DefaultNATSURL
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = publish.DefaultMaxFrame
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.MaxPixels == 0 {
		c.MaxPixels = DefaultMaxPixels
	}
	if c.OverloadWait == 0 {
		c.OverloadWait = DefaultOverloadWait
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := natsurl.Validate(c.NATSURL); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case c.MaxBodyBytes < 1:
		return c, fmt.Errorf("%w: max body bytes %d; want a positive size", ErrInvalidConfig, c.MaxBodyBytes)
	case c.MaxFrameBytes < 1:
		return c, fmt.Errorf("%w: max frame bytes %d; want a positive size", ErrInvalidConfig, c.MaxFrameBytes)
	case c.PublishTimeout < 0:
		return c, fmt.Errorf("%w: publish timeout %v; want a positive duration", ErrInvalidConfig, c.PublishTimeout)
	case c.ReconnectWait < 0:
		return c, fmt.Errorf("%w: reconnect wait %v; want a positive duration", ErrInvalidConfig, c.ReconnectWait)
	case c.RetryAfter < 0:
		return c, fmt.Errorf("%w: retry after %v; want a positive duration", ErrInvalidConfig, c.RetryAfter)
	case c.MaxInflightBytes < 1<<20:
		return c, fmt.Errorf("%w: max in-flight bytes %d; want at least 1 MiB (%d)", ErrInvalidConfig, c.MaxInflightBytes, 1<<20)
	case c.MaxPixels < 1 || c.MaxPixels > encode.MaxPixels:
		return c, fmt.Errorf("%w: max pixels %d; want 1..%d", ErrInvalidConfig, c.MaxPixels, encode.MaxPixels)
	case c.OverloadWait < 0:
		return c, fmt.Errorf("%w: overload wait %v; want a positive duration", ErrInvalidConfig, c.OverloadWait)
	}
	for i, t := range c.Tokens {
		if t == "" {
			return c, fmt.Errorf("%w: token %d is empty; tokens are 1 or more printable ASCII bytes without spaces", ErrInvalidConfig, i)
		}
		for j := 0; j < len(t); j++ {
			if t[j] <= 0x20 || t[j] > 0x7E {
				return c, fmt.Errorf("%w: token %d has byte 0x%02X at offset %d; tokens are printable ASCII without spaces", ErrInvalidConfig, i, t[j], j)
			}
		}
	}
	s, err := c.Stream.WithDefaults()
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.Stream = s
	return c, nil
}
