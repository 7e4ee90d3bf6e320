package stream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/natsembed"
	"github.com/framecast/framecast/shared/subject"
)

func TestEnsureRepublishes(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
	} {
		if _, err := c.StreamConfig(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v; want ErrInvalidConfig", name, err)
		}
	}
}
