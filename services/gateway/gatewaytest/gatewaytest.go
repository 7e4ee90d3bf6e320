// Package gatewaytest runs a real gateway for the tests of its clients (the
// Go client, the browser client and viewer): Start runs one on an embedded
// NATS server behind an httptest server, and Fabric.Frame and Fabric.Event
// store frames and ComfyUI events in its stream the way the producer does.
// Everything it starts ends when the test does.
package gatewaytest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/services/gateway"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/subject"
	"github.com/framecast/framecast/shared/wire"
)

// Fabric is a running gateway and a handle on its stream. Its methods may
// be called from any goroutine; they fail the test on an error.
type Fabric struct {
	// URL is the gateway's base URL, http://127.0.0.1:<port>.
	URL string

	t  testing.TB
	js jetstream.JetStream
}

// Start runs a gateway with an in-memory stream on a new embedded NATS
// server. It allows anonymous clients; edit, when not nil, changes its
// Config before it starts (e.g. to serve the viewer). Start returns once
// the gateway is ready.
func Start(t testing.TB, edit func(*gateway.Config)) *Fabric {
	t.Helper()
	js := natstest.Start(t)
	cfg := gateway.Config{
		NATSURL: js.Conn().ConnectedUrl(), Stream: stream.Config{Memory: true}, ID: "gw-test", AllowAnonymous: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	// The deployment's ensure step: the gateway only verifies the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, cfg.Stream); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	srv, err := gateway.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		_ = srv.Close()
	})
	waitReady(ctx, t, hs.URL)
	return &Fabric{URL: hs.URL, t: t, js: js}
}

// waitReady waits until the gateway's /readyz answers 200.
func waitReady(ctx context.Context, t testing.TB, base string) {
	t.Helper()
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gateway at %s not ready: %v", base, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Frame stores a frame with metadata m (Timestamp now when 0) and image
// img, and returns its stream sequence.
func (f *Fabric) Frame(m frame.Meta, img []byte) uint64 {
	f.t.Helper()
	if m.Timestamp == 0 {
		m.Timestamp = time.Now().UnixMilli()
	}
	msg := nats.NewMsg(m.Subject())
	m.Header(msg.Header)
	msg.Data = img
	return f.store(msg)
}

// Event stores the event object body, {"event":"<name>","data":{...}},
// byte for byte for client cid ("" = every client), and returns its stream
// sequence.
func (f *Fabric) Event(cid, body string) uint64 {
	f.t.Helper()
	e, err := wire.DecodeEvent([]byte(body))
	if err != nil {
		f.t.Fatalf("event %s: %v", body, err)
	}
	msg := nats.NewMsg(subject.Events(cid))
	msg.Header.Set(frame.HeaderEvent, e.Event)
	if cid != "" {
		msg.Header.Set(frame.HeaderClientID, cid)
	}
	msg.Data = []byte(body)
	return f.store(msg)
}

func (f *Fabric) store(msg *nats.Msg) uint64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := f.js.PublishMsg(ctx, msg)
	if err != nil {
		f.t.Fatalf("store %s: %v", msg.Subject, err)
	}
	return ack.Sequence
}
