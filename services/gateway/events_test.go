package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
	"github.com/framecast/framecast/shared/wire"
)

// publishEvent stores an event for client cid ("" = every client) as the
// producer does.
func (p *publisher) publishEvent(cid, body string) uint64 {
	p.t.Helper()
	msg := nats.NewMsg(subject.Events(cid))
	e, err := wire.DecodeEvent([]byte(body))
	if err != nil {
		p.t.Fatal(err)
	}
	msg.Header.Set(frame.HeaderEvent, e.Event)
	msg.Data = []byte(body)
	ack, err := p.js.PublishMsg(context.Background(), msg)
	if err != nil {
		p.t.Fatalf("publish event: %v", err)
	}
	return ack.Sequence
}

// TestEvents: ComfyUI events reach the ComfyDeploy endpoint as the same
// text, and native connections as event control messages, for their
// client id or every client, in stream order with the frames.
func TestEvents(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	native := dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c", nil)
	readControl(t, native, wire.TypeHello)
	other := dial(t, hs.URL, "/v1/ws?output_id=o&client_id=d", nil)
	readControl(t, other, wire.TypeHello)
	comfy := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=c", nil)
	readMsg(t, comfy)

	status := `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":2}},"sid":"c"}}`
	progress := `{"data":{"value":3,"max":20,"prompt_id":"p1","node":"3"},"event":"progress"}`
	done := `{"event":"executing","data":{"node":null,"prompt_id":"p1"}}`
	s1 := p.publishEvent("", status)
	s2 := p.publishEvent("c", progress)
	s3 := p.publish("o", "c", img(1))
	s4 := p.publishEvent("c", done)
	p.publishEvent("d", `{"event":"progress","data":{"value":1,"max":2}}`) // another client's

	for _, want := range []string{status, progress} {
		m := readMsg(t, comfy)
		if !m.text || string(m.raw) != want {
			t.Fatalf("comfy: got %q (text %v); want %s unchanged", m.raw, m.text, want)
		}
	}
	checkComfy(t, comfy, "o", []sent{{s3, img(1)}})
	if m := readMsg(t, comfy); string(m.raw) != done {
		t.Fatalf("comfy: got %q; want %s", m.raw, done)
	}

	for _, w := range []struct {
		seq   uint64
		event string
		data  string
	}{{s1, "status", `{"status":{"exec_info":{"queue_remaining":2}},"sid":"c"}`}, {s2, "progress", `{"value":3,"max":20,"prompt_id":"p1","node":"3"}`}} {
		e := readControl(t, native, wire.TypeEvent)
		if e.Seq == nil || *e.Seq != w.seq || e.Event != w.event || string(e.Data) != w.data {
			t.Fatalf("native event: got seq %v %q %s; want seq %d %q %s", e.Seq, e.Event, e.Data, w.seq, w.event, w.data)
		}
	}
	checkSeqs(t, readFrames(t, native, 1), []uint64{s3})
	if e := readControl(t, native, wire.TypeEvent); *e.Seq != s4 || e.Event != "executing" {
		t.Fatalf("native event: got seq %d %q; want %d executing", *e.Seq, e.Event, s4)
	}
	// The other client gets the broadcast and its own event only.
	if e := readControl(t, other, wire.TypeEvent); *e.Seq != s1 {
		t.Fatalf("other client: got event seq %d; want the broadcast %d", *e.Seq, s1)
	}
	if e := readControl(t, other, wire.TypeEvent); e.Event != "progress" || *e.Seq <= s4 {
		t.Fatalf("other client: got %q seq %d; want its own progress after %d", e.Event, *e.Seq, s4)
	}
}

// TestEventsOnResume: an event broadcast while a native client is away
// comes on its resume, in sequence order with the frames around it.
func TestEventsOnResume(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	c := dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c", nil)
	h := readControl(t, c, wire.TypeHello)
	first := p.publish("o", "c", img(0))
	checkSeqs(t, readFrames(t, c, 1), []uint64{first})
	_ = c.CloseNow()

	before := p.publish("o", "", img(1))
	ev := p.publishEvent("", `{"event":"execution_start","data":{"prompt_id":"p2"}}`)
	after := p.publish("o", "c", img(2))
	c = dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&client_id=c&since=%d&epoch=%s", first, h.Epoch), nil)
	readControl(t, c, wire.TypeHello)
	checkSeqs(t, readFrames(t, c, 1), []uint64{before})
	if e := readControl(t, c, wire.TypeEvent); *e.Seq != ev || e.Event != "execution_start" {
		t.Fatalf("got event seq %d %q; want %d execution_start", *e.Seq, e.Event, ev)
	}
	checkSeqs(t, readFrames(t, c, 1), []uint64{after})
}

// TestComfyAppMessages: a ComfyDeploy app's own messages (a 40 KiB camera
// frame as binary event 0, input and queue_prompt text) are read and
// discarded, the socket stays open and frames keep coming; a message over
// the endpoint's bound closes it with 1009.
func TestComfyAppMessages(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	comfy := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=app", nil)
	readMsg(t, comfy)

	camera := make([]byte, 32+40<<10)
	binary.LittleEndian.PutUint32(camera[0:], 0) // event 0
	binary.LittleEndian.PutUint32(camera[4:], 2) // PNG
	copy(camera[8:32], "input_image")
	ctx := context.Background()
	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageBinary, camera},
		{websocket.MessageText, []byte(`{"event":"input","inputs":{"prompt":"a cat","seed":7}}`)},
		{websocket.MessageText, []byte(`{"event":"queue_prompt"}`)},
		{websocket.MessageBinary, bytes.Repeat(camera, 100)}, // 4 MiB
	} {
		if err := comfy.Write(ctx, m.typ, m.data); err != nil {
			t.Fatalf("client message: %v", err)
		}
	}
	seq := p.publish("o", "app", img(5))
	checkComfy(t, comfy, "o", []sent{{seq, img(5)}})

	_ = comfy.Write(ctx, websocket.MessageBinary, make([]byte, ComfyReadLimit+1))
	_, err := tryRead(comfy)
	if got := closeStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("over the bound: got %v (%v); want %d", got, err, websocket.StatusMessageTooBig)
	}
}
