package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Control message types of the native protocol.
const (
	TypeHello = "hello"
	TypeGap   = "gap"
	TypeLive  = "live"
	TypeError = "error"
	// TypeReset: the client's resume point does not name a position in
	// the stream as it is now (another epoch, or past its last sequence),
	// or the stream was recreated under the connection. Epoch and Since
	// say where the client now stands: frames after Since of Epoch follow.
	TypeReset = "reset"
	// TypeEvent: a ComfyUI execution event for this client (or every
	// client), in stream order with the frames: Event, Data and Seq.
	TypeEvent = "event"
)

// Close codes of both websocket endpoints.
const (
	// CloseGoingAway: the gateway drains; reconnect elsewhere with since.
	CloseGoingAway = 1001
	// ClosePolicy: authentication or authorization failed.
	ClosePolicy = 1008
	// CloseSlowClient: the client fell further behind than the gateway can
	// hold and the stream could not catch it up; reconnect with since=<last
	// seq seen>.
	CloseSlowClient = 4008
)

// Control is a native control message (a text websocket message). Only the
// fields of its Type are set.
type Control struct {
	Type string `json:"type"`

	// hello
	Gateway  string `json:"gateway,omitempty"`
	OutputID string `json:"output_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	// Since is the sequence after which this connection's frames start.
	Since *uint64 `json:"since,omitempty"`
	// Epoch (hello, reset) names the stream's incarnation: sequences are
	// comparable only within one epoch. A client resumes with since and
	// the epoch it was given.
	Epoch string `json:"epoch,omitempty"`

	// gap: frames From..To (inclusive) are past the stream's window.
	From uint64 `json:"from,omitempty"`
	To   uint64 `json:"to,omitempty"`

	// live: replay has ended; Seq is the last sequence replayed (0 if none).
	Seq *uint64 `json:"seq,omitempty"`

	// error
	Message string `json:"message,omitempty"`

	// event: its name and data object, as the producer received them.
	Event string          `json:"event,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// EncodeControl returns c as JSON.
func EncodeControl(c Control) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("wire: marshal control: %v", err))
	}
	return b
}

// DecodeControl parses a control message; it must have a type.
func DecodeControl(b []byte) (Control, error) {
	var c Control
	if err := json.Unmarshal(b, &c); err != nil {
		return Control{}, fmt.Errorf("%w: control message: %v", ErrMalformed, err)
	}
	if c.Type == "" {
		return Control{}, fmt.Errorf("%w: control message has no type", ErrMalformed)
	}
	return c, nil
}

// Status is the seed's first message on a ComfyDeploy socket.
func Status(sid string) []byte {
	b, _ := json.Marshal(struct {
		Event string `json:"event"`
		Data  struct {
			SID string `json:"sid"`
		} `json:"data"`
	}{Event: "status", Data: struct {
		SID string `json:"sid"`
	}{sid}})
	return b
}

// Event is a ComfyUI execution event as the producer takes it and as the
// ComfyDeploy endpoint sends it: {"event": <name>, "data": {...}}.
type Event struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// DecodeEvent parses an event as it is stored; it needs a name and a data
// object.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: event: %v", ErrMalformed, err)
	}
	if e.Event == "" {
		return Event{}, fmt.Errorf("%w: event has no name", ErrMalformed)
	}
	if len(e.Data) == 0 || e.Data[0] != '{' {
		return Event{}, fmt.Errorf("%w: event %q: data is not an object", ErrMalformed, e.Event)
	}
	return e, nil
}

// EncodeEvent returns the native event control message
// {"type":"event","seq":N,"event":<name>,"data":<data>} with data byte for
// byte as the producer took it (EncodeControl would compact it and escape
// HTML characters).
func EncodeEvent(seq uint64, name string, data json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"` + TypeEvent + `","seq":`)
	b.WriteString(strconv.FormatUint(seq, 10))
	b.WriteString(`,"event":`)
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(name) // a string always encodes; Encode adds a newline
	b.Truncate(b.Len() - 1)
	b.WriteString(`,"data":`)
	b.Write(data)
	b.WriteByte('}')
	return b.Bytes()
}
