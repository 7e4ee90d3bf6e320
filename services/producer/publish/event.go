package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// Limits of an event.
const (
	// MaxEvent is the largest event object, in bytes of JSON text.
	MaxEvent = 64 << 10
	// MaxEventName is the longest event name, in bytes.
	MaxEventName = 64
)

// Event is one ComfyUI execution event to publish.
type Event struct {
	ClientID string // 0..128 bytes of printable ASCII; "" sends to every client
	// JSON is the event object's JSON text, exactly {"event": "<name>",
	// "data": {...}} (see ParseEvent). It is stored byte for byte.
	JSON []byte
	// IdempotencyKey, when set, makes a retry of the same event within the
	// stream's duplicate window store nothing twice. It is 1..128 bytes of
	// printable ASCII, unique per client (see EventMsgID).
	IdempotencyKey string
}

// EventAck is the outcome of a published event.
type EventAck struct {
	Seq  uint64 // stream sequence
	Name string // the event's name
	// Duplicate is true when the stream already held an event of this
	// client under the same idempotency key; Seq is then its sequence.
	Duplicate bool
}

// ParseEvent checks that b is an event object and returns its name. An
// event object is UTF-8 JSON text of one object with exactly two members:
// "event", a string of 1..MaxEventName bytes of printable ASCII that
// neither starts nor ends with a space, and "data", an object. b is at most
// MaxEvent bytes. Errors wrap ErrInvalidEvent and say what is allowed.
func ParseEvent(b []byte) (string, error) {
	const shape = `allowed: one JSON object {"event": "<name>", "data": {...}}`
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		return "", fmt.Errorf("%w: the event is empty; %s", ErrInvalidEvent, shape)
	case len(b) > MaxEvent:
		return "", fmt.Errorf("%w: the event is %d bytes; allowed: at most %d bytes", ErrInvalidEvent, len(b), MaxEvent)
	case !utf8.Valid(b):
		return "", fmt.Errorf("%w: the event is not valid UTF-8; %s", ErrInvalidEvent, shape)
	case !json.Valid(b):
		return "", fmt.Errorf("%w: the event is not valid JSON (%v); %s", ErrInvalidEvent, jsonError(b), shape)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, _ := dec.Token(); t != json.Delim('{') {
		return "", fmt.Errorf("%w: the event is a JSON %s; %s", ErrInvalidEvent, kind(b), shape)
	}
	var name string
	var sawName, sawData bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", fmt.Errorf("%w: %v; %s", ErrInvalidEvent, err, shape)
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", fmt.Errorf("%w: member %q: %v; %s", ErrInvalidEvent, key, err, shape)
		}
		switch {
		case key == "event" && sawName, key == "data" && sawData:
			return "", fmt.Errorf("%w: member %q is given twice; give it once", ErrInvalidEvent, key)
		case key == "event":
			sawName = true
			if raw[0] != '"' {
				return "", fmt.Errorf("%w: \"event\" is a JSON %s; allowed: a string of 1..%d bytes of printable ASCII", ErrInvalidEvent, kind(raw), MaxEventName)
			}
			if err := json.Unmarshal(raw, &name); err != nil {
				return "", fmt.Errorf("%w: \"event\": %v", ErrInvalidEvent, err)
			}
			if err := ValidateEventName(name); err != nil {
				return "", err
			}
		case key == "data":
			sawData = true
			if raw[0] != '{' {
				return "", fmt.Errorf("%w: \"data\" is a JSON %s; allowed: a JSON object", ErrInvalidEvent, kind(raw))
			}
		default:
			return "", fmt.Errorf("%w: unknown member %q; %s", ErrInvalidEvent, key, shape)
		}
	}
	if !sawName || !sawData {
		missing := "event"
		if sawName {
			missing = "data"
		}
		return "", fmt.Errorf("%w: member %q is missing; %s", ErrInvalidEvent, missing, shape)
	}
	return name, nil
}

// ValidateEventName checks an event name: 1..MaxEventName bytes of
// printable ASCII (0x20-0x7E), not starting or ending with a space (a NATS
// header value loses those).
func ValidateEventName(name string) error {
	const allowed = "allowed: 1..64 bytes of printable ASCII 0x20-0x7E, not starting or ending with a space"
	switch {
	case name == "":
		return fmt.Errorf("%w: \"event\" is empty; %s", ErrInvalidEvent, allowed)
	case len(name) > MaxEventName:
		return fmt.Errorf("%w: \"event\" is %d bytes; %s", ErrInvalidEvent, len(name), allowed)
	case name[0] == ' ' || name[len(name)-1] == ' ':
		return fmt.Errorf("%w: \"event\" %q starts or ends with a space; %s", ErrInvalidEvent, name, allowed)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7E {
			return fmt.Errorf("%w: \"event\" has byte 0x%02X at offset %d; %s", ErrInvalidEvent, c, i, allowed)
		}
	}
	return nil
}

// jsonError is why b is not valid JSON.
func jsonError(b []byte) error {
	var v any
	err := json.Unmarshal(b, &v)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%v at offset %d", se, se.Offset)
	case err == nil, errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("unexpected end of JSON input")
	}
	return err
}

// kind names the JSON type of the valid JSON value b.
func kind(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// EventMsgID is the Nats-Msg-Id of an event of client cid published with
// key: "<key>/~events.<client token>". The key is scoped to the client, so
// two clients, or an image batch, may use the same key without colliding:
// a frame's id ends in "/<batch index>" (digits), an event's never does.
func EventMsgID(cid, key string) string {
	return key + "/" + subject.EventsToken + "." + subject.ClientToken(cid)
}

// Event validates ev and publishes it to subject.Events(ev.ClientID) with
// headers frame.HeaderEvent (its name), frame.HeaderClientID (when set) and
// frame.HeaderTimestamp, and with Nats-Msg-Id EventMsgID when it has an
// idempotency key. Errors about ev (its client id and key too) wrap
// ErrInvalidEvent; broker failures wrap ErrUnavailable; an event the broker's
// max_payload cannot hold wraps ErrFrameTooLarge.
func (p *Publisher) Event(ctx context.Context, ev Event) (EventAck, error) {
	if err := subject.ValidateClientID(ev.ClientID); err != nil {
		return EventAck{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if ev.IdempotencyKey != "" {
		if err := checkKey(ErrInvalidEvent, ev.IdempotencyKey); err != nil {
			return EventAck{}, err
		}
	}
	name, err := ParseEvent(ev.JSON)
	if err != nil {
		return EventAck{}, err
	}
	m := &nats.Msg{Subject: subject.Events(ev.ClientID), Header: nats.Header{}, Data: ev.JSON}
	m.Header.Set(frame.HeaderEvent, name)
	if ev.ClientID != "" {
		m.Header.Set(frame.HeaderClientID, ev.ClientID)
	}
	m.Header.Set(frame.HeaderTimestamp, strconv.FormatInt(time.Now().UnixMilli(), 10))
	if ev.IdempotencyKey != "" {
		m.Header.Set(jetstream.MsgIDHeader, EventMsgID(ev.ClientID, ev.IdempotencyKey))
	}
	nc := p.js.Conn()
	payload := p.opts.MaxPayload
	if payload == 0 {
		payload = nc.MaxPayload()
	}
	if size := int64(len(m.Data) + headerSize(m.Header)); payload > 0 && size > payload {
		return EventAck{}, fmt.Errorf("%w: the event is %d bytes with headers; the broker accepts at most %d bytes per message", ErrFrameTooLarge, size, payload)
	}
	if !nc.IsConnected() {
		return EventAck{}, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, nc.Status())
	}
	pctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	pa, err := p.js.PublishMsg(pctx, m, jetstream.WithRetryAttempts(0))
	if err != nil {
		err, uncertain := classify(ctx, err)
		if uncertain {
			err = fmt.Errorf("%w; the event may have been stored", err)
		}
		return EventAck{}, err
	}
	return EventAck{Seq: pa.Sequence, Name: name, Duplicate: pa.Duplicate}, nil
}
