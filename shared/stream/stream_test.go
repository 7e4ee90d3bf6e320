package stream

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/subject"
)

func TestEnsureRepublishes(t *testing.T) {
	js := natstest.Start(t)
	nc := js.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{MaxAge: time.Minute, MaxBytes: 64 << 20, Memory: true}
	if _, err := Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	// Applying it again, and with a changed limit, is fine.
	cfg.MaxAge = 2 * time.Minute
	s, err := Ensure(ctx, js, cfg)
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != 2*time.Minute {
		t.Fatalf("max age after update = %v; want 2m", got)
	}

	live, err := nc.SubscribeSync(subject.Live("o.1", "c"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		msg := nats.NewMsg(subject.Frames("o.1", "c"))
		msg.Data = []byte{byte(i)}
		msg.Header.Set(jetstream.MsgIDHeader, "same-id")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, subject.Frames("o.1", "c"), []byte("second")); err != nil {
		t.Fatal(err)
	}
	first, err := live.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second, err := live.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := first.Header.Get(jetstream.SequenceHeader); got != "1" {
		t.Fatalf("first Nats-Sequence = %q; want 1", got)
	}
	if got := second.Header.Get(jetstream.SequenceHeader); got != "2" {
		t.Fatalf("second Nats-Sequence = %q (duplicate stored?); want 2", got)
	}
	if got := second.Header.Get(jetstream.LastSequenceHeader); got != "1" {
		t.Fatalf("second Nats-Last-Sequence = %q; want 1", got)
	}
	if string(second.Data) != "second" {
		t.Fatalf("second data = %q; want %q", second.Data, "second")
	}
}

func TestConfigRefuses(t *testing.T) {
	for name, c := range map[string]Config{
		"tiny age":        {MaxAge: time.Millisecond},
		"tiny bytes":      {MaxBytes: 10},
		"dup beyond age":  {MaxAge: time.Minute, Duplicates: time.Hour},
		"replicas 7":      {Replicas: 7},
		"negative dup":    {Duplicates: -time.Second},
		"negative replic": {Replicas: -1},
		"bucket with dot": {Bucket: "LARGE.1"},
		"tiny bucket":     {BucketMaxBytes: 10},
	} {
		if _, err := c.StreamConfig(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v; want ErrInvalidConfig", name, err)
		}
	}
}

func TestConfigRefusesBucket(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"dot in bucket name", Config{Bucket: "a.b"}, "letters, digits, _ and - only"},
		{"stream name unusable as bucket", Config{Name: "OUT PUTS"}, "letters, digits, _ and - only"},
		{"tiny bucket", Config{BucketMaxBytes: 1000}, "at least 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.ObjectStoreConfig()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v; want ErrInvalidConfig saying %q", err, tt.msg)
			}
		})
	}
}

func TestEnsureObjects(t *testing.T) {
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{MaxAge: time.Minute, Duplicates: 30 * time.Second, MaxBytes: 64 << 20, Memory: true}
	// Ensure makes the bucket along with the stream; EnsureObjects again,
	// with a changed limit, updates it.
	if _, err := Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.BucketMaxBytes = 32 << 20
	obs, err := EnsureObjects(ctx, js, cfg)
	if err != nil {
		t.Fatalf("second EnsureObjects: %v", err)
	}
	st, err := obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Bucket(); got != "OUTPUTS_LARGE" {
		t.Errorf("bucket = %q; want OUTPUTS_LARGE", got)
	}
	if got := st.TTL(); got != 90*time.Second {
		t.Errorf("ttl = %v; want 1m30s (max age + duplicate window)", got)
	}
	if got := st.Storage(); got != jetstream.MemoryStorage {
		t.Errorf("storage = %v; want memory, as the stream", got)
	}
	info, err := js.Stream(ctx, "OBJ_OUTPUTS_LARGE")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxBytes; got != 32<<20 {
		t.Errorf("max bytes = %d; want %d", got, 32<<20)
	}
	data := bytes.Repeat([]byte("frame"), 100_000)
	if _, err := obs.PutBytes(ctx, "k/0", data); err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(ctx, "k/0")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("object read back: %d bytes, different; want the %d bytes stored", len(got), len(data))
	}
}

func TestFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse([]string{"--stream-max-age", "2s", "--stream-replicas", "3", "--stream-memory", "--stream-duplicates", "1s"}); err != nil {
		t.Fatal(err)
	}
	want := Config{MaxAge: 2 * time.Second, Replicas: 3, Memory: true, Duplicates: time.Second}
	if c != want {
		t.Fatalf("got %+v; want %+v", c, want)
	}
	if err := fs.Parse([]string{"--stream-max-age", "soon"}); err == nil {
		t.Fatal("--stream-max-age soon was accepted")
	}
}

// The bucket's stream serves reads from its leader only (AllowDirect off),
// also when the bucket was made by the nats.go Object Store with its
// default, and every later Ensure keeps it so without a moment on.
func TestEnsureObjectsTurnsDirectGetOff(t *testing.T) {
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{Memory: true}
	oc, err := cfg.ObjectStoreConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateObjectStore(ctx, oc); err != nil {
		t.Fatal(err)
	}
	allowDirect := func() bool {
		t.Helper()
		st, err := js.Stream(ctx, BucketStream(oc.Bucket))
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.AllowDirect
	}
	if !allowDirect() {
		t.Fatal("the library's bucket has AllowDirect off already; this test shows nothing")
	}
	for i := range 2 {
		if _, err := Ensure(ctx, js, cfg); err != nil {
			t.Fatalf("Ensure %d: %v", i, err)
		}
		if allowDirect() {
			t.Errorf("after Ensure %d: AllowDirect on; want off", i)
		}
	}
}

// Verify finds a missing stream and bucket, every setting that differs
// from the Config (field, want, have), and nothing once Ensure has run;
// it changes nothing itself.
func TestVerify(t *testing.T) {
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{MaxAge: time.Minute, Duplicates: 30 * time.Second, MaxBytes: 64 << 20, Memory: true}

	_, err := Verify(ctx, js, cfg)
	var verr *VerifyError
	if !errors.As(err, &verr) || !errors.Is(err, ErrMissing) || errors.Is(err, ErrMismatch) {
		t.Fatalf("before Ensure: got %v; want a VerifyError matching ErrMissing only", err)
	}
	if got, want := strings.Join(verr.Missing, ","), "OUTPUTS,OBJ_OUTPUTS_LARGE"; got != want {
		t.Errorf("missing: got %s; want %s", got, want)
	}
	if !strings.Contains(err.Error(), "framecast stream ensure") {
		t.Errorf("error %q does not name the command that applies the settings", err)
	}
	if _, err := js.Stream(ctx, "OUTPUTS"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Verify created the stream: lookup got %v; want ErrStreamNotFound", err)
	}

	if _, err := Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := Verify(ctx, js, cfg)
	if err != nil {
		t.Fatalf("after Ensure: %v", err)
	}
	if got := s.CachedInfo().Config.Name; got != "OUTPUTS" {
		t.Errorf("stream: got %s; want OUTPUTS", got)
	}

	stale := cfg
	stale.MaxAge = 2 * time.Minute
	stale.Replicas = 1
	stale.BucketMaxBytes = 32 << 20
	_, err = Verify(ctx, js, stale)
	if !errors.As(err, &verr) || !errors.Is(err, ErrMismatch) || errors.Is(err, ErrMissing) {
		t.Fatalf("other settings: got %v; want a VerifyError matching ErrMismatch only", err)
	}
	want := []Difference{
		{"OUTPUTS", "max_age", "2m0s", "1m0s"},
		// The bucket's in the order of jetstream.StreamConfig's fields.
		{"OBJ_OUTPUTS_LARGE", "max_bytes", "33554432", "16777216"},
		{"OBJ_OUTPUTS_LARGE", "max_age", "2m30s", "1m30s"},
	}
	if !reflect.DeepEqual(verr.Differences, want) {
		t.Errorf("differences:\n got %v\nwant %v", verr.Differences, want)
	}
	if !strings.Contains(err.Error(), "OUTPUTS max_age: want 2m0s, have 1m0s") {
		t.Errorf("error %q does not say field, want and have", err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != time.Minute {
		t.Errorf("max age after a failed Verify: %v; want 1m, unchanged", got)
	}
}

// A stream changed by hand beyond the Config's fields (republish off,
// direct reads on) is reported too.
func TestVerifyStructure(t *testing.T) {
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{Memory: true}
	if _, err := Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.StreamConfig()
	if err != nil {
		t.Fatal(err)
	}
	sc.RePublish = nil
	sc.AllowDirect = true
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(ctx, js, cfg)
	var verr *VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("got %v; want a VerifyError", err)
	}
	want := []Difference{
		{"OUTPUTS", "republish", "outputs.>->live.outputs.>", "none"},
		{"OUTPUTS", "allow_direct", "false", "true"},
	}
	if !reflect.DeepEqual(verr.Differences, want) {
		t.Errorf("differences:\n got %v\nwant %v", verr.Differences, want)
	}
}
