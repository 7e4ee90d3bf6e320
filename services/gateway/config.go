package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/shared/natsurl"
	"github.com/framecast/framecast/shared/stream"
)

// ErrInvalidConfig is wrapped by Config validation errors.
var ErrInvalidConfig = errors.New("invalid gateway config")

// Defaults of Config's zero fields.
const (
	DefaultNATSURL      = "nats://127.0.0.1:4222"
	DefaultCacheBytes   = hub.DefaultBudget
	DefaultWriteTimeout = 10 * time.Second
	DefaultPingInterval = 20 * time.Second
	DefaultHubBuffer    = hub.DefaultBuffer
	// DefaultMaxConns bounds the websocket connections of one gateway:
	// about 700 MiB of idle connections (some 14 KiB each), well under
	// the file descriptors a container gets.
	DefaultMaxConns = 50000
	// DefaultMaxConnsPerSub bounds the connections of one token subject
	// (one client id) on one gateway: enough for a client watching many
	// outputs from several tabs.
	DefaultMaxConnsPerSub = 64
	// DefaultHTTPReadTimeout bounds reading a request's headers (and body,
	// which the gateway's requests have none of); it ends at the upgrade.
	DefaultHTTPReadTimeout = 10 * time.Second
	// DefaultHTTPIdleTimeout closes a keep-alive HTTP connection (a
	// prober's, a scraper's) idle this long; websockets are not HTTP
	// connections once upgraded, and are not affected.
	DefaultHTTPIdleTimeout = 2 * time.Minute
	// HTTPWriteTimeout bounds writing one HTTP response (an error, the
	// metrics); it ends at the upgrade.
	HTTPWriteTimeout = 30 * time.Second
	// MaxHeaderBytes bounds a request's line and headers (a token in the
	// URL or the Authorization header included); over it net/http answers
	// 431 before the gateway sees the request.
	MaxHeaderBytes = 32 << 10
	// NativeReadLimit bounds one client message on the native endpoint,
	// whose clients need send none; over it the connection closes with
	// 1009.
	NativeReadLimit = 64 << 10
	// ComfyReadLimit bounds one client message on the ComfyDeploy
	// endpoint: its apps send camera and canvas frames (a 32 MiB image
	// and its 32-byte header fit) and input messages, which the gateway
	// reads and discards as they stream in, holding none of them. Over
	// it the connection closes with 1009.
	ComfyReadLimit = 32<<20 + 1<<10
)

// Config configures a Server. The zero value is valid only with
// AllowAnonymous or a JWTSecret.
type Config struct {
	// NATSURL is the NATS server (comma-separated for several); default
	// DefaultNATSURL.
	NATSURL string
	// Stream is the OUTPUTS stream; the gateway ensures it at start.
	Stream stream.Config
	// ID names this gateway in hello messages and logs; default the host
	// name.
	ID string
	// JWTSecret is the HS256 secret of client tokens. Required unless
	// AllowAnonymous.
	JWTSecret []byte
	// AllowAnonymous lets clients connect without a token, watching every
	// output as any client id. For development only: anyone can read
	// anything.
	AllowAnonymous bool
	// AllowedOrigins are host patterns (path.Match syntax, e.g.
	// "app.example.com", "*.example.com", "localhost:*") of browser Origins
	// allowed to connect besides the gateway's own host. Empty allows
	// same-origin only; "*" allows any host (dangerous with cookies).
	AllowedOrigins []string
	// ComfyTokenParam is the query parameter the ComfyDeploy endpoint
	// reads a JWT from (besides the Authorization header); default
	// "token". Set another name when the apps' URLs carry a token= of
	// their own (a hosted comfydeploy URL does), or "-" to read the
	// header only.
	ComfyTokenParam string
	// CacheBytes bounds the frames the gateway's rings hold together, for
	// every connection; past it the least recently used outputs lose
	// their oldest frames, and a connection that still needs them reads
	// them from the stream (one shared read). Default DefaultCacheBytes.
	CacheBytes int64
	// CopyFrames sends every frame by writing it to each socket. By
	// default a frame of at least ZeroCopyMin bytes is kept once in a
	// memory file and handed to each socket by reference (sendfile), which
	// saves the kernel a copy per socket (package zerocopy); where memory
	// files are missing the gateway copies anyway.
	CopyFrames bool
	// HubBuffer is the capacity, in messages, of the channel between NATS
	// and the hub's dispatcher; default DefaultHubBuffer. When the
	// dispatcher falls that far behind, NATS drops live frames of a
	// subscription (a slow consumer) and its ring heals with a stream
	// read. A small value forces such drops, for tests.
	HubBuffer int
	// WriteTimeout bounds one websocket write; default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// PingInterval is the keepalive period; default DefaultPingInterval.
	PingInterval time.Duration
	// MaxConns bounds the websocket connections of this gateway; default
	// DefaultMaxConns, negative for no bound. Over it an upgrade gets 503
	// gateway_full.
	MaxConns int
	// MaxConnsPerIP bounds the connections of one client address; default
	// (0) or negative: no bound. Behind a proxy, set TrustedProxies too,
	// or every client shares the proxy's address. Over it an upgrade gets
	// 429 ip_connection_limit.
	MaxConnsPerIP int
	// MaxConnsPerSub bounds the connections of one token subject (tokens
	// without sub are not counted); default DefaultMaxConnsPerSub,
	// negative for no bound. Over it an upgrade gets 429
	// sub_connection_limit.
	MaxConnsPerSub int
	// MaxResumesPerIP bounds the connections of one client address that
	// resume (since, last) and have not caught up yet; default (0) or
	// negative: no bound. Over it an upgrade gets 429 ip_resume_limit.
	MaxResumesPerIP int
	// TrustedProxies are addresses and CIDR ranges of reverse proxies
	// (e.g. "10.0.0.0/8"). A request from one of them counts for the
	// rightmost address of X-Forwarded-For that is not one of them. Empty:
	// X-Forwarded-For is ignored, and the peer's address counts.
	TrustedProxies []string
	// HTTPReadTimeout bounds reading a request's headers, as
	// http.Server.ReadHeaderTimeout and ReadTimeout; default
	// DefaultHTTPReadTimeout. HTTPIdleTimeout is http.Server.IdleTimeout;
	// default DefaultHTTPIdleTimeout. Both apply to the servers of
	// HTTPServer; an upgraded websocket is bound by neither.
	HTTPReadTimeout time.Duration
	HTTPIdleTimeout time.Duration
	// SeparateAdmin leaves /metrics out of Handler: it is served only by
	// AdminHandler, on a listener of its own (--admin-addr).
	SeparateAdmin bool
	// Registry receives the metrics; nil means a new registry.
	Registry *prometheus.Registry
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Viewer serves the web viewer at / and the ES module client at
	// /framecast.js.
	Viewer bool
}

func (c Config) withDefaults() (Config, error) {
	if c.NATSURL == "" {
		c.NATSURL = DefaultNATSURL
	}
	switch c.ComfyTokenParam {
	case "":
		c.ComfyTokenParam = "token"
	case "-":
		c.ComfyTokenParam = ""
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.HubBuffer == 0 {
		c.HubBuffer = DefaultHubBuffer
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerSub == 0 {
		c.MaxConnsPerSub = DefaultMaxConnsPerSub
	}
	if c.HTTPReadTimeout == 0 {
		c.HTTPReadTimeout = DefaultHTTPReadTimeout
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var err error
	if c.Stream, err = c.Stream.WithDefaults(); err != nil {
		return c, err
	}
	if err := natsurl.Validate(c.NATSURL); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case len(c.JWTSecret) == 0 && !c.AllowAnonymous:
		return c, fmt.Errorf("%w: no JWT secret; set one, or allow anonymous access for development", ErrInvalidConfig)
	case c.CacheBytes < 1<<20:
		return c, fmt.Errorf("%w: cache bytes %d; want at least 1048576 (1 MiB)", ErrInvalidConfig, c.CacheBytes)
	case c.HubBuffer < 0:
		return c, fmt.Errorf("%w: hub buffer %d; want > 0", ErrInvalidConfig, c.HubBuffer)
	case c.WriteTimeout < 0:
		return c, fmt.Errorf("%w: write timeout %v; want > 0", ErrInvalidConfig, c.WriteTimeout)
	case strings.Trim(c.ComfyTokenParam, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != "" || len(c.ComfyTokenParam) > 64:
		return c, fmt.Errorf("%w: comfy token param %q; want up to 64 letters, digits, '_', '-' or '.', or \"-\" for the header only", ErrInvalidConfig, c.ComfyTokenParam)
	case c.PingInterval < 0:
		return c, fmt.Errorf("%w: ping interval %v; want > 0", ErrInvalidConfig, c.PingInterval)
	case c.HTTPReadTimeout < 0:
		return c, fmt.Errorf("%w: http read timeout %v; want > 0", ErrInvalidConfig, c.HTTPReadTimeout)
	case c.HTTPIdleTimeout < 0:
		return c, fmt.Errorf("%w: http idle timeout %v; want > 0", ErrInvalidConfig, c.HTTPIdleTimeout)
	}
	return c, nil
}
