package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/stream"
)

// The gateway never creates or changes the stream: while it is missing or
// has other settings the gateway is not ready and /readyz says what is
// wrong (for a setting: field, want, have); it verifies again until an
// ensure run makes the stream match, and is ready then.
func TestNotReadyUntilStreamMatches(t *testing.T) {
	ns := bareNATS(t)
	hs := unverifiedGateway(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// waitProblem waits until /readyz answers 503 not_ready with a message
	// holding want.
	waitProblem := func(want string) {
		t.Helper()
		var last string
		for {
			var body errorBody
			code := getJSON(t, hs.URL+"/readyz", &body)
			if code == http.StatusOK {
				t.Fatalf("readyz: got 200; want 503 saying %q", want)
			}
			last = body.Error.Message
			if code == http.StatusServiceUnavailable && body.Error.Code == "not_ready" && strings.Contains(last, want) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("readyz: got %d %q; want 503 not_ready saying %q", code, last, want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitProblem("stream OUTPUTS does not exist; stream OBJ_OUTPUTS_LARGE does not exist")

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, "OUTPUTS"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream lookup after the gateway started: got %v; want ErrStreamNotFound (the gateway must not create it)", err)
	}

	stale := testStream
	stale.MaxAge = time.Minute
	ensureStream(t, ns, stale)
	waitProblem("OUTPUTS max_age: want 15m0s, have 1m0s")
	s, err := js.Stream(ctx, "OUTPUTS")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != time.Minute {
		t.Fatalf("max age while the gateway verifies: got %v; want 1m (the gateway must not change it)", got)
	}

	ensureStream(t, ns, testStream)
	waitReady(t, hs.URL)
	if _, err := stream.Verify(ctx, js, testStream); err != nil {
		t.Fatalf("after the gateway became ready: %v", err)
	}
}

// TestUpgradeBeforeAnyLookup: while no stream lookup has succeeded (here
// the stream does not exist), connections are refused with 503
// stream_unavailable, also when many arrive at once and share the
// lookup; once the stream exists, the next one is accepted.
func TestUpgradeBeforeAnyLookup(t *testing.T) {
	ns := bareNATS(t)
	hs := unverifiedGateway(t, ns)

	const conns = 20
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			resp, err := http.Get(hs.URL + "/v1/ws?output_id=o" + strconv.Itoa(i))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var body errorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusServiceUnavailable ||
				body.Error.Code != "stream_unavailable" || resp.Header.Get("Retry-After") == "" {
				t.Errorf("connect %d before any lookup: %d %+v (%v); want 503 stream_unavailable with Retry-After", i, resp.StatusCode, body, err)
			}
		})
	}
	wg.Wait()

	ensureStream(t, ns, testStream)
	c, resp, err := websocket.Dial(context.Background(), wsURL(hs.URL, "/v1/ws?output_id=o"), nil)
	if err != nil {
		t.Fatalf("connect once the stream exists: %v (%v)", err, resp)
	}
	_ = c.CloseNow()
}

// unverifiedGateway starts a gateway on ns without making its stream, as
// a deployment whose ensure step has not run yet.
func unverifiedGateway(t *testing.T, ns *server.Server) *httptest.Server {
	t.Helper()
	srv, err := New(context.Background(), Config{NATSURL: ns.ClientURL(), Stream: testStream, ID: "gw",
		AllowAnonymous: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return newHTTPTest(t, srv)
}
