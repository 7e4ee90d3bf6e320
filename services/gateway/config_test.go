package gateway

import (
	"context"
	"errors"
	"testing"
)

// TestNewRefusesBadConfig: a config New cannot run is refused at start with
// ErrInvalidConfig, before any connection is tried.
func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no secret and no anonymous", Config{}},
		{"malformed NATS URL", Config{NATSURL: "htp:/bad url", AllowAnonymous: true}},
		{"http NATS URL", Config{NATSURL: "http://127.0.0.1:4222", AllowAnonymous: true}},
		{"empty cluster member", Config{NATSURL: "nats://a:4222,", AllowAnonymous: true}},
		{"short secret", Config{JWTSecret: []byte("short")}},
		{"tiny cache", Config{CacheBytes: 1024, AllowAnonymous: true}},
		{"negative hub buffer", Config{HubBuffer: -1, AllowAnonymous: true}},
		{"negative write timeout", Config{WriteTimeout: -1, AllowAnonymous: true}},
		{"trusted proxy not an address", Config{TrustedProxies: []string{"caddy"}, AllowAnonymous: true}},
		{"trusted proxy bad range", Config{TrustedProxies: []string{"10.0.0.0/33"}, AllowAnonymous: true}},
		{"negative http read timeout", Config{HTTPReadTimeout: -1, AllowAnonymous: true}},
		{"negative http idle timeout", Config{HTTPIdleTimeout: -1, AllowAnonymous: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = discardLogger()
			srv, err := New(context.Background(), tt.cfg)
			if err == nil {
				srv.Close()
				t.Fatal("New accepted the config; want an error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v; want ErrInvalidConfig", err)
			}
		})
	}
}
