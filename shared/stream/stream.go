// Package stream defines the OUTPUTS JetStream stream: it captures
// outputs.>, keeps a short replay window, drops duplicate Nats-Msg-Ids
// within its duplicate window, and republishes every stored message to
// live.outputs.> stamped with its sequence.
//
// Only an administrative identity creates or changes it (Ensure, run by
// `framecast stream ensure`); the producer and the gateways check it with
// Verify, which needs no right beyond looking the streams up.
//
// Beside the stream it defines the large-frame bucket, a JetStream Object
// Store (OUTPUTS_LARGE) holding the images too large to travel inline in a
// stream message; the message then carries only a reference (see
// frame.HeaderObject). The bucket keeps the stream's window, storage and
// replicas, so a reference never outlives its image (see
// Config.ObjectStoreConfig).
package stream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"regexp"
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
	// BucketSuffix makes the default bucket name from the stream's:
	// OUTPUTS_LARGE.
	BucketSuffix = "_LARGE"
)

// bucketName is what JetStream accepts as an Object Store bucket name.
var bucketName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// Config is the stream's tunable part. The zero value is the development
// default: OUTPUTS, 15 min, 1 GiB, 2 min duplicate window, 1 replica, file
// storage, and the bucket OUTPUTS_LARGE bounded to 256 MiB.
type Config struct {
	Name       string
	MaxAge     time.Duration
	MaxBytes   int64
	Duplicates time.Duration // must not exceed MaxAge
	Replicas   int           // 1..5
	Memory     bool          // memory storage instead of file
	// Bucket is the Object Store bucket of large frames; default Name +
	// BucketSuffix. Letters, digits, _ and - only.
	Bucket string
	// BucketMaxBytes bounds the bucket; default a quarter of MaxBytes (at
	// least 1 MiB), so that the stream and the bucket together reserve
	// 1.25 × MaxBytes of the server's JetStream storage. The bucket refuses
	// new objects while full (dropping part of an old object would corrupt
	// it), so large frames fail to publish until old ones age out: size it
	// for the large frames of one window.
	BucketMaxBytes int64
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
	if c.Bucket == "" {
		c.Bucket = c.Name + BucketSuffix
	}
	if c.BucketMaxBytes == 0 {
		c.BucketMaxBytes = max(c.MaxBytes/4, 1<<20)
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
	case !bucketName.MatchString(c.Bucket):
		return c, fmt.Errorf("%w: bucket name %q; want letters, digits, _ and - only", ErrInvalidConfig, c.Bucket)
	case c.BucketMaxBytes < 1<<20:
		return c, fmt.Errorf("%w: bucket max bytes %d; want at least 1 MiB", ErrInvalidConfig, c.BucketMaxBytes)
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
		// Reads go to the stream's leader, never to a replica that may
		// not yet hold what the leader acknowledged (see EnsureObjects):
		// the gateway asks the leader whether a replay read on a lagging
		// replica has everything.
		AllowDirect: false,
	}, nil
}

// ObjectStoreConfig is the JetStream configuration of c's large-frame
// bucket: the stream's storage and replicas, MaxBytes BucketMaxBytes, and
// a TTL of MaxAge + Duplicates. The margin keeps an image at least as long
// as any reference to it: a producer stores the image first, and reuses it
// when a retry with the same idempotency key comes within the duplicate
// window, so its reference is stored at most Duplicates later.
func (c Config) ObjectStoreConfig() (jetstream.ObjectStoreConfig, error) {
	c, err := c.WithDefaults()
	if err != nil {
		return jetstream.ObjectStoreConfig{}, err
	}
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.ObjectStoreConfig{
		Bucket:      c.Bucket,
		Description: "framecast frames too large for a " + c.Name + " message, referenced from it",
		TTL:         c.MaxAge + c.Duplicates,
		MaxBytes:    c.BucketMaxBytes,
		Storage:     storage,
		Replicas:    c.Replicas,
	}, nil
}

// Ensure creates the stream and its large-frame bucket, or updates them to
// c; it is idempotent. It needs the rights to create and update both
// streams, which deploy/nats/accounts.conf gives the admin user only: the
// services Verify instead. Lowering a limit drops what no longer fits.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Stream, error) {
	sc, err := c.StreamConfig()
	if err != nil {
		return nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	if _, err := EnsureObjects(ctx, js, c); err != nil {
		return nil, err
	}
	return s, nil
}

// EnsureObjects creates the large-frame bucket or updates it to c; it is
// idempotent. Ensure calls it.
//
// The bucket's stream is kept with AllowDirect off, unlike the default of
// the nats.go Object Store: with it on, every replica answers reads of an
// object's metadata, and a replica that has not yet applied an object the
// leader has acknowledged says it does not exist. A gateway whose server
// holds such a replica gets the frame referring to the object (from the
// OUTPUTS stream's leader) before its replica gets the object, and would
// report a frame it could deliver as lost. With AllowDirect off, every
// read goes to the bucket stream's leader, which has every acknowledged
// object. An existing bucket is updated in place, never through the
// library's create-or-update, which would turn AllowDirect back on for a
// moment on every start.
func EnsureObjects(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.ObjectStore, error) {
	oc, err := c.ObjectStoreConfig()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (jetstream.ObjectStore, error) {
		return nil, fmt.Errorf("ensure object store %s: %w", oc.Bucket, err)
	}
	st, err := js.Stream(ctx, BucketStream(oc.Bucket))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Another service may create it first: both end up updating the
		// stream below.
		if _, err := js.CreateObjectStore(ctx, oc); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fail(err)
		}
		st, err = js.Stream(ctx, BucketStream(oc.Bucket))
	}
	if err != nil {
		return fail(err)
	}
	have := st.CachedInfo().Config
	if want := bucketConfig(oc, have); !reflect.DeepEqual(want, have) {
		if _, err := js.UpdateStream(ctx, want); err != nil {
			return fail(err)
		}
	}
	obs, err := js.ObjectStore(ctx, oc.Bucket)
	if err != nil {
		return fail(err)
	}
	return obs, nil
}

// bucketConfig is have, the bucket stream's configuration, with the
// settings of oc that Ensure applies and Verify checks. (The object store
// API sets them only when it creates the bucket.)
func bucketConfig(oc jetstream.ObjectStoreConfig, have jetstream.StreamConfig) jetstream.StreamConfig {
	want := have
	want.Description = oc.Description
	want.MaxAge = oc.TTL
	want.MaxBytes = oc.MaxBytes
	want.Storage = oc.Storage
	want.Replicas = oc.Replicas
	want.AllowDirect = false
	return want
}

// BucketStream is the name of the JetStream stream holding bucket.
func BucketStream(bucket string) string { return "OBJ_" + bucket }

// Flags registers the stream's settings on fs as --stream-name,
// --stream-max-age, --stream-max-bytes, --stream-duplicates,
// --stream-replicas and --stream-memory. `framecast stream ensure` and
// every service take the same flags: the services Verify the stream
// against theirs, and are not ready while it differs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "stream-name", c.Name, "JetStream stream name (default "+DefaultName+")")
	fs.DurationVar(&c.MaxAge, "stream-max-age", c.MaxAge, "replay window: how long frames are kept (default 15m)")
	fs.Int64Var(&c.MaxBytes, "stream-max-bytes", c.MaxBytes, "replay window size in bytes (default 1 GiB)")
	fs.DurationVar(&c.Duplicates, "stream-duplicates", c.Duplicates, "duplicate window for Idempotency-Key / Nats-Msg-Id (default 2m, at most the max age)")
	fs.IntVar(&c.Replicas, "stream-replicas", c.Replicas, "stream replicas, 1..5 (default 1; 3 in a cluster)")
	fs.BoolVar(&c.Memory, "stream-memory", c.Memory, "keep the stream in memory instead of files")
}
