package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/framecast/framecast/services/gateway/gatewaytest"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// fabric is a real gateway (see package gatewaytest).
type fabric struct{ *gatewaytest.Fabric }

func newFabric(t *testing.T) fabric { return fabric{gatewaytest.Start(t, nil)} }

// frame stores a WEBP frame of output oid for client cid ("" = every client).
func (f fabric) frame(oid, cid, img string) uint64 {
	return f.Frame(frame.Meta{OutputID: oid, ClientID: cid, Format: frame.WEBP, Width: 4, Height: 3, BatchSize: 1}, []byte(img))
}

// describe is one line for a message the tests compare.
func describe(m Message) string {
	switch m := m.(type) {
	case *Frame:
		return fmt.Sprintf("frame %d %s", m.Seq, m.Image)
	case *Control:
		if m.Type == wire.TypeEvent {
			seq := "-"
			if m.Seq != nil {
				seq = itoa(*m.Seq)
			}
			return fmt.Sprintf("event %s %s %s", seq, m.Event, m.Data)
		}
		return m.Type
	}
	return fmt.Sprintf("%T", m)
}

// runUntil runs s, recording what it hands on, until a message described
// as last.
func runUntil(t *testing.T, s *Stream, last string) []string {
	t.Helper()
	// The timeout only bounds how long a stream that never gets there
	// takes to fail.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var got []string
	err := s.Run(ctx, func(_ context.Context, m Message) error {
		got = append(got, describe(m))
		if got[len(got)-1] == last {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: got %v; want context.Canceled after %q (handled %q)", err, last, got)
	}
	return got
}

// TestGatewayEventsResume: through a real gateway, a Stream hands on the
// events of its client id and broadcast ones in stream order with the
// frames, and one that stopped resumes after the last event or frame it
// handed on, the events stored meanwhile included.
func TestGatewayEventsResume(t *testing.T) {
	f := newFabric(t)
	status := `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}`
	start := `{"data":{"prompt_id":"p1"},"event":"execution_start"}`
	progress := `{"event":"progress","data":{"value":3,"max":20,"prompt_id":"p1","node":"3"}}`
	done := `{"event":"executing","data":{"node":null,"prompt_id":"p1"}}`

	e1 := f.Event("", status)
	f1 := f.frame("o", "c", "one")
	s, err := NewStream(StreamConfig{Config: Config{URL: f.URL, OutputID: "o", ClientID: "c", Since: u64(0)}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"hello",
		fmt.Sprintf(`event %d status {"status":{"exec_info":{"queue_remaining":1}}}`, e1),
		fmt.Sprintf("frame %d one", f1),
	}
	equal(t, runUntil(t, s, want[2]), want)

	// Stored while the Stream is away.
	e2 := f.Event("c", start)
	f.Event("d", progress) // another client's
	f2 := f.frame("o", "", "two")
	e3 := f.Event("", progress)
	f3 := f.frame("o", "c", "three")
	e4 := f.Event("c", done)
	want = []string{
		"hello",
		fmt.Sprintf(`event %d execution_start {"prompt_id":"p1"}`, e2),
		fmt.Sprintf("frame %d two", f2),
		fmt.Sprintf(`event %d progress {"value":3,"max":20,"prompt_id":"p1","node":"3"}`, e3),
		fmt.Sprintf("frame %d three", f3),
		fmt.Sprintf(`event %d executing {"node":null,"prompt_id":"p1"}`, e4),
	}
	equal(t, runUntil(t, s, want[5]), want)
	if seq, _, ok := s.Resume(); seq != e4 || !ok {
		t.Errorf("Resume got %d, %v; want the last event's %d", seq, ok, e4)
	}
}

// TestGatewayEventsComfyDeploy: through a real gateway, the ComfyDeploy
// endpoint's events come as events with their data as the producer took
// it, ComfyUI's status event after the gateway's status message included.
func TestGatewayEventsComfyDeploy(t *testing.T) {
	f := newFabric(t)
	c, err := Dial(t.Context(), Config{URL: f.URL, ClientID: "c", ComfyDeploy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := next(t, c).(*Control); m.Type != TypeStatus || m.SID != "c" {
		t.Fatalf("got %+v; want the gateway's status with sid c", m)
	}
	f.Event("", `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"c"}}`)
	f.Event("c", `{"event": "live_status", "data": {"prompt_id": "p1", "current_node": "KSampler", "progress": 0.5}}`)
	f.frame("o", "c", "img")
	f.Event("d", `{"event":"progress","data":{"value":1,"max":2}}`) // another client's
	f.Event("c", `{"event":"execution_success","data":{"prompt_id":"p1"}}`)
	for _, want := range []string{
		`event - status {"status":{"exec_info":{"queue_remaining":0}},"sid":"c"}`,
		`event - live_status {"prompt_id": "p1", "current_node": "KSampler", "progress": 0.5}`,
		"frame 0 img",
		`event - execution_success {"prompt_id":"p1"}`,
	} {
		if got := describe(next(t, c)); got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
}
