// Package stream defines the OUTPUTS JetStream stream that both services
// apply at start: it captures outputs.>, keeps a short replay window, drops
// duplicate Nats-Msg-Ids within its duplicate window, and republishes every
// stored message to live.outputs.> stamped with its sequence.
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/subject"
)

// ErrInvalidConfig is wrapped by Config validation errors.
var ErrInvalidConfig = errors.New("invalid stream config")

// Defaults of Config's zero fields.
const (
	DefaultName       = "OUTPUTS"
	DefaultMaxAge     = 15 * time.Minute
	DefaultMaxBytes   = 1 << 30
	DefaultDuplicates = 2 * time.Minute
	DefaultReplicas   = 1
)

// Config is the stream's tunable part. The zero value is the development
// default: OUTPUTS, 15 min, 1 GiB, 2 min duplicate window, 1 replica, file
// storage.
type Config struct {
	Name       string
	MaxAge     time.Duration
	MaxBytes   int64
	Duplicates time.Duration // must not exceed MaxAge
	Replicas   int           // 1..5
	Memory     bool          // memory storage instead of file
}

// WithDefaults fills zero fields and validates the result.
func (c Config) WithDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Duplicates == 0 {
		c.Duplicates = min(DefaultDuplicates, c.MaxAge)
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	switch {
	case c.MaxAge < time.Second:
		return c, fmt.Errorf("%w: max age %v; want at least 1s", ErrInvalidConfig, c.MaxAge)
	case c.MaxBytes < 1<<20:
		return c, fmt.Errorf("%w: max bytes %d; want at least 1 MiB", ErrInvalidConfig, c.MaxBytes)
	case c.Duplicates < 0 || c.Duplicates > c.MaxAge:
		return c, fmt.Errorf("%w: duplicate window %v; want 0..max age (%v)", ErrInvalidConfig, c.Duplicates, c.MaxAge)
	case c.Replicas < 1 || c.Replicas > 5:
		return c, fmt.Errorf("%w: replicas %d; want 1..5", ErrInvalidConfig, c.Replicas)
	}
	return c, nil
}

// StreamConfig is the JetStream configuration of c.
func (c Config) StreamConfig() (jetstream.StreamConfig, error) {
	c, err := c.WithDefaults()
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "framecast frames: short replay window, republished to " + subject.LiveAll,
		Subjects:    []string{subject.All},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
		Storage:     storage,
		RePublish: &jetstream.RePublish{
			Source:      subject.All,
			Destination: subject.LiveAll,
		},
		AllowDirect: true,
	}, nil
}

// Ensure creates the stream or updates it to c; it is idempotent and safe
// to run from every service at start.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Stream, error) {
	sc, err := c.StreamConfig()
	if err != nil {
		return nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	return s, nil
}
