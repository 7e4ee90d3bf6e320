package publish

import (
	"context"
	"errors"
	"image"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

func TestEvent(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	tests := []struct {
		name, cid, body, event string
	}{
		{"targeted", "sid 1", `{"event":"progress","data":{"value":3,"max":20,"prompt_id":"p"}}`, "progress"},
		{"broadcast", "", `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":0}}}}`, "status"},
		// Stored byte for byte: whitespace, member order and escapes kept.
		{"as sent", "c", " {\"data\" : {\"node\":null},\n \"event\":\"exec\\u0075ting\"} ", "executing"},
	}
	var last uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ack, err := p.Event(context.Background(), Event{ClientID: tt.cid, JSON: []byte(tt.body)})
			if err != nil {
				t.Fatalf("Event: %v", err)
			}
			if ack.Seq <= last || ack.Duplicate {
				t.Fatalf("ack %+v; want a new seq after %d", ack, last)
			}
			last = ack.Seq
			msg, err := st.GetMsg(context.Background(), ack.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Subject != subject.Events(tt.cid) || string(msg.Data) != tt.body {
				t.Fatalf("stored %q %q; want %q %q", msg.Subject, msg.Data, subject.Events(tt.cid), tt.body)
			}
			if got := msg.Header.Get(frame.HeaderEvent); got != tt.event || ack.Name != tt.event {
				t.Fatalf("header %s %q, ack name %q; want %q", frame.HeaderEvent, got, ack.Name, tt.event)
			}
			if got := msg.Header.Get(frame.HeaderClientID); got != tt.cid {
				t.Fatalf("header %s %q; want %q", frame.HeaderClientID, got, tt.cid)
			}
			if ts, err := strconv.ParseInt(msg.Header.Get(frame.HeaderTimestamp), 10, 64); err != nil || ts <= 0 {
				t.Fatalf("header %s %q; want a time in ms", frame.HeaderTimestamp, msg.Header.Get(frame.HeaderTimestamp))
			}
		})
	}
}

// TestEventIdempotentRetry: a retry with the same key and client stores
// nothing; the same key for another client, or for an image batch, does
// not collide with it.
func TestEventIdempotentRetry(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	ev := Event{ClientID: "a", JSON: []byte(`{"event":"executed","data":{}}`), IdempotencyKey: "k"}
	first, err := p.Event(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Event(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if again.Seq != first.Seq || !again.Duplicate || first.Duplicate {
		t.Fatalf("first %+v, retry %+v; want the same seq, the retry a duplicate", first, again)
	}
	ev.ClientID = ""
	other, err := p.Event(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	acks, err := p.Images(context.Background(), Batch{OutputID: "o", Format: frame.PNG, IdempotencyKey: "k", Images: []image.Image{gray(1, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if other.Duplicate || acks[0].Duplicate || other.Seq == first.Seq {
		t.Fatalf("broadcast %+v, image %+v; want both stored anew", other, acks[0])
	}
	msg, err := st.GetMsg(context.Background(), first.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Header.Get(jetstream.MsgIDHeader), "k/~events.a"; got != want || EventMsgID("a", "k") != want {
		t.Fatalf("Nats-Msg-Id %q; want %q", got, want)
	}
	if got, want := EventMsgID("", "k"), "k/~events.~all"; got != want {
		t.Fatalf("EventMsgID broadcast %q; want %q", got, want)
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 3 {
		t.Fatalf("stream has %d messages; want 3", info.State.Msgs)
	}
}

func TestEventInvalid(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	ok := []byte(`{"event":"e","data":{}}`)
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"client id", Event{ClientID: "a\tb", JSON: ok}, "client_id contains control character"},
		{"key", Event{JSON: ok, IdempotencyKey: strings.Repeat("k", 129)}, "idempotency key is 129 bytes"},
		{"body", Event{JSON: []byte(`{"event":"e"}`)}, `member "data" is missing`},
		{"nil body", Event{}, "the event is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Event(context.Background(), tt.ev)
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want ErrInvalidEvent saying %q", err, tt.want)
			}
		})
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 0 {
		t.Fatalf("stream has %d messages; want none", info.State.Msgs)
	}
}

func TestEventOverMaxPayload(t *testing.T) {
	js, _ := setup(t)
	p := New(js, Options{MaxPayload: 100})
	_, err := p.Event(context.Background(), Event{JSON: []byte(`{"event":"e","data":{"pad":"` + strings.Repeat("x", 100) + `"}}`)})
	if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "at most 100 bytes per message") {
		t.Fatalf("got %v; want ErrFrameTooLarge naming the broker's limit", err)
	}
}

func TestEventUnavailable(t *testing.T) {
	js, _ := setup(t)
	p := New(js, Options{})
	js.Conn().Close()
	_, err := p.Event(context.Background(), Event{JSON: []byte(`{"event":"e","data":{}}`)})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v; want ErrUnavailable", err)
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // the name, or a part of the error
		ok         bool
	}{
		{"minimal", `{"event":"status","data":{}}`, "status", true},
		{"data first, spaces", " { \"data\": {\"a\": [1, {}]}, \"event\": \"live_status\" }\n", "live_status", true},
		{"escaped name", `{"event":"a\u0020b","data":{}}`, "a b", true},
		{"64-byte name", `{"event":"` + strings.Repeat("n", 64) + `","data":{}}`, strings.Repeat("n", 64), true},
		{"empty", ``, "the event is empty", false},
		{"blank", " \n", "the event is empty", false},
		{"not JSON", `event=status`, "invalid character 'e' looking for beginning of value at offset 1", false},
		{"truncated", `{"event":"s","data":{`, "unexpected end of JSON input", false},
		{"two values", `{"event":"s","data":{}}{}`, "not valid JSON", false},
		{"array", `[{"event":"s","data":{}}]`, "the event is a JSON array", false},
		{"string", `"status"`, "the event is a JSON string", false},
		{"null", `null`, "the event is a JSON null", false},
		{"extra member", `{"event":"s","data":{},"sid":"x"}`, `unknown member "sid"`, false},
		{"member in other case", `{"Event":"s","data":{}}`, `unknown member "Event"`, false},
		{"ComfyUI's own shape", `{"type":"status","data":{}}`, `unknown member "type"`, false},
		{"missing data", `{"event":"s"}`, `member "data" is missing`, false},
		{"missing event", `{"data":{}}`, `member "event" is missing`, false},
		{"event twice", `{"event":"s","event":"t","data":{}}`, `member "event" is given twice`, false},
		{"data twice", `{"event":"s","data":{},"data":{}}`, `member "data" is given twice`, false},
		{"event a number", `{"event":1,"data":{}}`, `"event" is a JSON number`, false},
		{"event null", `{"event":null,"data":{}}`, `"event" is a JSON null`, false},
		{"empty name", `{"event":"","data":{}}`, `"event" is empty`, false},
		{"65-byte name", `{"event":"` + strings.Repeat("n", 65) + `","data":{}}`, `"event" is 65 bytes`, false},
		{"control in name", `{"event":"a\u0007","data":{}}`, "byte 0x07 at offset 1", false},
		{"non-ASCII name", `{"event":"caf\u00e9","data":{}}`, "byte 0xC3 at offset 3", false},
		{"leading space", `{"event":" s","data":{}}`, "starts or ends with a space", false},
		{"data an array", `{"event":"s","data":[]}`, `"data" is a JSON array; allowed: a JSON object`, false},
		{"data null", `{"event":"s","data":null}`, `"data" is a JSON null`, false},
		{"data a string", `{"event":"s","data":"{}"}`, `"data" is a JSON string`, false},
		{"invalid UTF-8", "{\"event\":\"s\",\"data\":{\"x\":\"\xff\"}}", "not valid UTF-8", false},
		{"over 64 KiB", `{"event":"s","data":{"x":"` + strings.Repeat("x", MaxEvent) + `"}}`, "allowed: at most 65536 bytes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvent([]byte(tt.body))
			switch {
			case tt.ok && (err != nil || got != tt.want):
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			case !tt.ok && (!errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %q, %v; want ErrInvalidEvent containing %q", got, err, tt.want)
			}
		})
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{`{"event":"s","data":{}}`, `{"data":{"a":1},"event":"x y"}`, `{"event":"s"}`, `[]`, `{"event":"s","data":{},"event":"t"}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := ParseEvent(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
			}
			return
		}
		if ValidateEventName(name) != nil {
			t.Fatalf("accepted name %q is not valid", name)
		}
	})
}
