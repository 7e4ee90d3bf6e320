package replay_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/stream"
)

// TestSinceForLastRenditions: last=n counts the frames of the renditions a
// connection takes; with both, a frame's preview is read with it.
func TestSinceForLastRenditions(t *testing.T) {
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	seq := map[string]uint64{}
	// 1 a, 2 a preview, 3 a full (with preview), 4 b preview, 5 b full, 6 a full (no preview)
	for _, p := range []struct {
		name string
		oid  string
		r    frame.Rendition
	}{{"1", "a", frame.Full}, {"2", "a", frame.Preview}, {"3", "a", frame.Full}, {"4", "b", frame.Preview}, {"5", "b", frame.Full}, {"6", "a", frame.Full}} {
		m := frame.Meta{OutputID: p.oid, Format: frame.WEBP, Width: 1, Height: 1, BatchSize: 1, Rendition: p.r}
		msg := nats.NewMsg(m.Subject())
		m.Header(msg.Header)
		msg.Data = []byte("x")
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		seq[p.name] = ack.Sequence
	}
	src := replay.Source{JS: js, Stream: stream.DefaultName}
	a := []string{"outputs.a.*"}
	tests := []struct {
		name    string
		filters []string
		n       int
		rs      replay.Renditions
		want    uint64
	}{
		{"full", a, 2, replay.FullOnly, seq["3"] - 1},
		{"full, all of them", a, 3, replay.FullOnly, seq["1"] - 1},
		{"previews", a, 1, replay.PreviewsOnly, seq["2"] - 1},
		{"both: the oldest frame's preview comes too", a, 2, replay.AllRenditions, seq["2"] - 1},
		{"both: a frame without a preview", a, 1, replay.AllRenditions, seq["6"] - 1},
		{"both, two outputs", []string{"outputs.a.*", "outputs.b.*"}, 2, replay.AllRenditions, seq["4"] - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := src.SinceForLast(ctx, tt.filters, tt.n, tt.rs)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got since %d; want %d", got, tt.want)
			}
		})
	}
}

// TestSinceForLastEmptyStream: on a stream that never held a message
// (first and last sequence 0), last=n starts after 0, not at a sequence
// wrapped below it.
func TestSinceForLastEmptyStream(t *testing.T) {
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	src := replay.Source{JS: js, Stream: stream.DefaultName}
	got, err := src.SinceForLast(ctx, []string{"outputs.a.*"}, 3, replay.FullOnly)
	if err != nil || got != 0 {
		t.Fatalf("got since %d, %v; want 0", got, err)
	}
}
