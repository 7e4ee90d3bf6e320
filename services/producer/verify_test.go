package producer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/stream"
)

// By default the producer never creates or changes the stream: while it
// is missing or has other settings the producer is not ready and /readyz
// says what is wrong (for a setting: field, want, have); it verifies again
// until an ensure run makes the stream match. With EnsureStream it applies
// its own settings instead.
func TestVerifyStream(t *testing.T) {
	ns := startNATS(t, t.TempDir(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := func(cfg Config) string {
		t.Helper()
		cfg.NATSURL, cfg.ReconnectWait = ns.ClientURL(), 50*time.Millisecond
		srv, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		return hs.URL
	}
	// waitStatus waits until /readyz answers 503 with a status holding
	// want.
	waitStatus := func(base, want string) {
		t.Helper()
		var last string
		for {
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Status string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("readyz: got 200; want 503 saying %q", want)
			}
			last = body.Status
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(last, want) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("readyz: got %d %q; want 503 saying %q", resp.StatusCode, last, want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	maxAge := func() time.Duration {
		t.Helper()
		s, err := js.Stream(ctx, stream.DefaultName)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.MaxAge
	}

	base := start(Config{})
	waitStatus(base, "stream OUTPUTS does not exist; stream OBJ_OUTPUTS_LARGE does not exist")
	if _, err := js.Stream(ctx, stream.DefaultName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream lookup: got %v; want ErrStreamNotFound (the producer must not create it)", err)
	}

	stale := stream.Config{MaxAge: time.Minute}
	if _, err := stream.Ensure(ctx, js, stale); err != nil {
		t.Fatal(err)
	}
	waitStatus(base, "OUTPUTS max_age: want 15m0s, have 1m0s")
	if got := maxAge(); got != time.Minute {
		t.Fatalf("max age while the producer verifies: got %v; want 1m (the producer must not change it)", got)
	}

	// An ensuring producer applies its settings; the verifying one then
	// finds them and is ready.
	waitReady(t, start(Config{EnsureStream: true}), true)
	if got := maxAge(); got != stream.DefaultMaxAge {
		t.Fatalf("max age after an ensuring producer started: got %v; want %v", got, stream.DefaultMaxAge)
	}
	waitReady(t, base, true)
}
