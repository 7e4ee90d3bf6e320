package producer

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// checkEvent reads the event of r back from the stream and checks its
// subject, headers and bytes against what was sent.
func (e *env) checkEvent(t *testing.T, r result, cid, name string, body []byte) *jetstream.RawStreamMsg {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d body %s; want 200", r.status, r.raw)
	}
	if r.event.ClientID != cid || r.event.Event != name || r.event.Seq == 0 {
		t.Fatalf("answer %s; want client_id %q, event %q and a seq", r.raw, cid, name)
	}
	msg, err := e.st.GetMsg(context.Background(), r.event.Seq)
	if err != nil {
		t.Fatalf("GetMsg(%d): %v", r.event.Seq, err)
	}
	if msg.Subject != subject.Events(cid) || !bytes.Equal(msg.Data, body) {
		t.Fatalf("stored %q %q; want %q %q", msg.Subject, msg.Data, subject.Events(cid), body)
	}
	if got := msg.Header.Get(frame.HeaderEvent); got != name {
		t.Fatalf("header %s %q; want %q", frame.HeaderEvent, got, name)
	}
	return msg
}

func TestEvents(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		name, query, ctype, event string
		cid                       string
		body                      []byte
	}{
		{"targeted", "client_id=sid-1", "application/json", "progress", "sid-1", []byte(`{"event":"progress","data":{"value":3,"max":20}}`)},
		{"broadcast", "", "application/json", "status", "", []byte(`{"event":"status","data":{"status":{"exec_info":{"queue_remaining":2}},"sid":null}}`)},
		{"empty client_id broadcasts", "client_id=", "application/json", "status", "", []byte(`{"event":"status","data":{}}`)},
		{"escaped client_id", "client_id=a.b%20*", "application/json", "executing", "a.b *", []byte(`{"event":"executing","data":{"node":null}}`)},
		{"charset, spaces kept", "client_id=c", "Application/JSON; charset=UTF-8", "executed", "c", []byte(" {\"data\": {\"output\": {}},\n\"event\": \"executed\"}\n")},
	}
	var last uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, eventsPath, tt.query, tt.ctype, tt.body, nil)
			e.checkEvent(t, r, tt.cid, tt.event, tt.body)
			if r.event.Seq <= last || r.event.Duplicate {
				t.Fatalf("seq %d duplicate %v; want a new seq after %d", r.event.Seq, r.event.Duplicate, last)
			}
			last = r.event.Seq
		})
	}

	// Events and frames share the stream's sequence.
	img := e.post(t, "o", "client_id=sid-1", "image/png", pngBytes(t, 2, 2), nil)
	after := e.post(t, eventsPath, "client_id=sid-1", "application/json", []byte(`{"event":"execution_success","data":{}}`), nil)
	if img.status != 200 || after.status != 200 || img.ok.Frames[0].Seq != last+1 || after.event.Seq != last+2 {
		t.Fatalf("frame %s then event %s; want seqs %d and %d", img.raw, after.raw, last+1, last+2)
	}

	if want := "framecast_producer_events_total 6"; !strings.Contains(e.metrics(t), want) {
		t.Fatalf("metrics lack %q", want)
	}
}

// TestEventIdempotencyKey: a retry with the same key for the same client
// answers the first seq as a duplicate; the key is scoped to the client.
func TestEventIdempotencyKey(t *testing.T) {
	e := newEnv(t, Config{})
	body := []byte(`{"event":"execution_start","data":{"prompt_id":"p1"}}`)
	hdr := map[string]string{"Idempotency-Key": "evt-1"}
	first := e.post(t, eventsPath, "client_id=a", "application/json", body, hdr)
	msg := e.checkEvent(t, first, "a", "execution_start", body)
	if got, want := msg.Header.Get(jetstream.MsgIDHeader), "evt-1/~events.a"; got != want {
		t.Fatalf("Nats-Msg-Id %q; want %q", got, want)
	}
	before := e.count(t)
	again := e.post(t, eventsPath, "client_id=a", "application/json", body, hdr)
	if again.status != 200 || again.event.Seq != first.event.Seq || !again.event.Duplicate || !strings.Contains(again.raw, `"duplicate":true`) {
		t.Fatalf("retry %d %s; want 200 with seq %d and duplicate true", again.status, again.raw, first.event.Seq)
	}
	if e.count(t) != before {
		t.Fatalf("the retry stored a message")
	}
	other := e.post(t, eventsPath, "client_id=b", "application/json", body, hdr)
	e.checkEvent(t, other, "b", "execution_start", body)
	if other.event.Duplicate || strings.Contains(other.raw, "duplicate") {
		t.Fatalf("another client with the same key: %s; want a new event", other.raw)
	}
}

// TestEventBodyLimit: a producer whose body limit is below 64 KiB
// applies its own to events. (Auth and a chunked body over 64 KiB are in
// TestAuth and TestChunkedBodyOverLimit.)
func TestEventBodyLimit(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 1000})
	body := []byte(`{"event":"s","data":{"x":"` + strings.Repeat("x", 1000) + `"}}`)
	r := e.post(t, eventsPath, "", "application/json", body, nil)
	if r.status != 413 || r.err.Error.Code != CodeBodyTooLarge || !strings.Contains(r.err.Error.Message, "the limit is 1000 bytes") {
		t.Fatalf("got %d %s %q; want 413 %s naming the limit of 1000 bytes", r.status, r.err.Error.Code, r.err.Error.Message, CodeBodyTooLarge)
	}
	if n := e.count(t); n != 0 {
		t.Fatalf("stream has %d messages; want none", n)
	}
}
