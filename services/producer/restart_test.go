package producer

import (
	"context"
	"net"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/framecast/framecast/shared/frame"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestBrokerOutage starts the producer before NATS, then stops and
// restarts NATS on the same port and store: while NATS is away publishes
// get 503 with Retry-After, and afterwards they work again by themselves.
// The producer ensures the stream itself (EnsureStream), as with its
// embedded server.
func TestBrokerOutage(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	srv, err := New(context.Background(), Config{
		EnsureStream:  true,
		NATSURL:       "nats://127.0.0.1:" + strconv.Itoa(port),
		ReconnectWait: 50 * time.Millisecond,
		RetryAfter:    3 * time.Second,
	})
	if err != nil {
		t.Fatalf("New with NATS down: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e := &env{srv: srv, http: hs}
	p := pngBytes(t, 3, 3)

	unavailable := func(t *testing.T) {
		t.Helper()
		r := e.post(t, "outage", "", "image/png", p, nil)
		if r.status != 503 || r.err.Error.Code != CodeBrokerUnavailable || r.header.Get("Retry-After") != "3" {
			t.Fatalf("got %d %q Retry-After %q; want 503 %q Retry-After 3", r.status, r.err.Error.Code, r.header.Get("Retry-After"), CodeBrokerUnavailable)
		}
		if len(r.err.Error.Published) != 0 {
			t.Fatalf("published %v; want none", r.err.Error.Published)
		}
		r = e.post(t, eventsPath, "client_id=c", "application/json", []byte(`{"event":"status","data":{}}`), nil)
		if r.status != 503 || r.err.Error.Code != CodeBrokerUnavailable || r.header.Get("Retry-After") != "3" || !strings.Contains(r.err.Error.Message, "nothing was published") {
			t.Fatalf("event: got %d %q %q Retry-After %q; want 503 %q saying nothing was published, Retry-After 3", r.status, r.err.Error.Code, r.err.Error.Message, r.header.Get("Retry-After"), CodeBrokerUnavailable)
		}
	}

	t.Run("before NATS starts", func(t *testing.T) {
		waitReady(t, hs.URL, false)
		unavailable(t)
	})

	ns := startNATS(t, dir, port)
	waitReady(t, hs.URL, true)
	first := e.post(t, "outage", "", "image/png", p, nil)
	if first.status != 200 {
		t.Fatalf("after NATS started: got %d %s; want 200", first.status, first.raw)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	t.Run("NATS stopped", func(t *testing.T) {
		waitReady(t, hs.URL, false)
		unavailable(t)
	})

	e.ns = startNATS(t, dir, port)
	waitReady(t, hs.URL, true)
	r := e.post(t, "outage", "", "image/png", p, nil)
	if r.status != 200 {
		t.Fatalf("after NATS restarted: got %d %s; want 200", r.status, r.raw)
	}
	if r.ok.Frames[0].Seq <= first.ok.Frames[0].Seq {
		t.Fatalf("seq %d after restart; want after %d (same store)", r.ok.Frames[0].Seq, first.ok.Frames[0].Seq)
	}
	full := newEnvOn(t, e.ns, Config{})
	full.checkFrames(t, r, "outage", "", 1, frame.PNG, 3, 3)
}

// TestCloseEndsGoroutines checks that Close leaves no goroutine behind,
// even when NATS was never reached.
func TestCloseEndsGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	srv, err := New(context.Background(), Config{NATSURL: "nats://127.0.0.1:" + strconv.Itoa(freePort(t)), ReconnectWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close; want %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPartialBatch makes the stream refuse the second frame of a batch
// (one message per subject, discard new) and checks that the 503 lists
// exactly the stored frame, and that a retry with the same key after the
// limit is lifted completes the batch without duplicating it.
func TestPartialBatch(t *testing.T) {
	e := newEnv(t, Config{RetryAfter: time.Second})
	ctx := context.Background()
	info, err := e.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	strict := info.Config
	strict.MaxMsgsPerSubject, strict.Discard, strict.DiscardNewPerSubject = 1, jetstream.DiscardNew, true
	if _, err := e.js.UpdateStream(ctx, strict); err != nil {
		t.Fatalf("update stream: %v", err)
	}
	ct, body := multipartBody(t, []part{{"image/png", pngBytes(t, 2, 2)}, {"image/png", pngBytes(t, 3, 3)}})
	hdr := map[string]string{"Idempotency-Key": "partial-1"}
	r := e.post(t, "part", "", ct, body, hdr)
	if r.status != 503 || r.err.Error.Code != CodeBrokerUnavailable || r.header.Get("Retry-After") != "1" {
		t.Fatalf("got %d %q Retry-After %q; want 503 %s Retry-After 1", r.status, r.err.Error.Code, r.header.Get("Retry-After"), CodeBrokerUnavailable)
	}
	pub := r.err.Error.Published
	if len(pub) != 1 || pub[0].BatchIndex != 0 || pub[0].Width != 2 {
		t.Fatalf("published %+v; want frame 0 only", pub)
	}
	for _, want := range []string{"published 1 of 2 frames", "frame 1 failed", "same Idempotency-Key"} {
		if !strings.Contains(r.err.Error.Message, want) {
			t.Fatalf("message %q; want it to contain %q", r.err.Error.Message, want)
		}
	}
	if got := e.count(t); got != 1 {
		t.Fatalf("stream has %d messages; want 1", got)
	}

	if _, err := e.js.UpdateStream(ctx, info.Config); err != nil {
		t.Fatalf("restore stream: %v", err)
	}
	r = e.post(t, "part", "", ct, body, hdr)
	if r.status != 200 || r.ok.Frames[0].Seq != pub[0].Seq || !r.ok.Frames[0].Duplicate || r.ok.Frames[1].Duplicate {
		t.Fatalf("retry: got %d %s; want 200 with frame 0 a duplicate of seq %d", r.status, r.raw, pub[0].Seq)
	}
	if got := e.count(t); got != 2 {
		t.Fatalf("stream has %d messages after the retry; want 2", got)
	}
}

// TestMetricsDuringNew scrapes a shared registry while New runs, as a
// process does that serves one /metrics for several services: the ready
// gauge must be safe to read from the moment it is registered.
func TestMetricsDuringNew(t *testing.T) {
	ns := startNATS(t, t.TempDir(), 0)
	reg := prometheus.NewRegistry()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Errorf("Gather: %v", err)
				return
			}
		}
	}()
	srv, err := New(context.Background(), Config{NATSURL: ns.ClientURL(), Registry: reg})
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
