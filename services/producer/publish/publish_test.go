package publish

import (
	"bytes"
	"context"
	"errors"
	"image"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/subject"
)

func setup(t *testing.T) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	js := natstest.Start(t)
	st, err := stream.Ensure(context.Background(), js, stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return js, st
}

// stored reads the frame at seq back from the stream, with its metadata.
func stored(t *testing.T, st jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, frame.Meta) {
	t.Helper()
	msg, err := st.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatalf("GetMsg(%d): %v", seq, err)
	}
	m, err := frame.Decode(msg.Header)
	if err != nil {
		t.Fatalf("frame at seq %d: %v", seq, err)
	}
	return msg, m
}

func gray(w, h int) image.Image {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(i)
	}
	return m
}

func TestImages(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	acks, err := p.Images(context.Background(), Batch{
		OutputID: "out.1", ClientID: "client *", Format: frame.PNG,
		Images: []image.Image{gray(4, 3), gray(5, 2)},
	})
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	if len(acks) != 2 {
		t.Fatalf("got %d acks; want 2", len(acks))
	}
	for i, a := range acks {
		msg, m := stored(t, st, a.Seq)
		if msg.Subject != subject.Frames("out.1", "client *") || m.BatchIndex != i || m.BatchSize != 2 || m.Width != a.Width || m.Format != frame.PNG {
			t.Fatalf("frame %d: subject %q meta %+v; ack %+v", i, msg.Subject, m, a)
		}
	}
	if acks[0].Width != 4 || acks[1].Width != 5 {
		t.Fatalf("acks %+v; want widths 4, 5", acks)
	}
}

func TestPixelsAndEncodedProbe(t *testing.T) {
	js, _ := setup(t)
	p := New(js, Options{})
	px := encode.Pixels{Width: 2, Height: 2, Channels: 3, Pix: make([]uint8, 12)}
	eb, err := Encode(context.Background(), Batch{OutputID: "o", Pixels: []encode.Pixels{px}, Format: frame.JPEG, Quality: 50})
	if err != nil {
		t.Fatal(err)
	}
	// Leave the metadata out: Encoded probes it.
	eb.Frames[0].Format, eb.Frames[0].Width, eb.Frames[0].Height = 0, 0, 0
	acks, err := p.Encoded(context.Background(), eb)
	if err != nil {
		t.Fatal(err)
	}
	if a := acks[0]; a.Format != frame.JPEG || a.Width != 2 || a.Height != 2 {
		t.Fatalf("ack %+v; want a 2x2 JPEG", a)
	}
}

func TestInvalid(t *testing.T) {
	js, st := setup(t)
	capped := New(js, Options{MaxFrame: 300})
	inlineOnly := New(js, Options{MaxPayload: 300, InlineLimit: -1})
	big := Frame{Data: make([]byte, 400), Format: frame.PNG, Width: 1, Height: 1}
	small := Frame{Data: []byte{1}, Format: frame.PNG, Width: 1, Height: 1}
	tests := []struct {
		name string
		p    *Publisher
		eb   EncodedBatch
		want error
		msg  string
	}{
		{"empty batch", capped, EncodedBatch{OutputID: "o"}, ErrInvalid, "allowed: 1..4096"},
		{"bad output id", capped, EncodedBatch{OutputID: strings.Repeat("x", 25), Frames: []Frame{small}}, ErrInvalid, "24 bytes"},
		{"bad key", capped, EncodedBatch{OutputID: "o", IdempotencyKey: "a\nb", Frames: []Frame{small}}, ErrInvalid, "printable ASCII"},
		{"bad size", capped, EncodedBatch{OutputID: "o", Frames: []Frame{{Data: []byte{1}, Format: frame.PNG, Width: -1, Height: 1}}}, ErrInvalid, "width and height"},
		{"not an image", capped, EncodedBatch{OutputID: "o", Frames: []Frame{{Data: []byte("text")}}}, ErrInvalid, "not a JPEG, PNG or WEBP"},
		{"second frame over max frame", capped, EncodedBatch{OutputID: "o", Frames: []Frame{small, big}}, ErrFrameTooLarge, "frame 1 is 400 bytes; the largest frame is 300 bytes"},
		{"inline only, over max payload", inlineOnly, EncodedBatch{OutputID: "o", Frames: []Frame{small, big}}, ErrFrameTooLarge, "at most 300 bytes"},
		{"offset without total", capped, EncodedBatch{OutputID: "o", BatchOffset: 1, Frames: []Frame{small}}, ErrInvalid, "batch total 0; allowed: 1..4096"},
		{"total over the largest batch", capped, EncodedBatch{OutputID: "o", BatchTotal: 4097, Frames: []Frame{small}}, ErrInvalid, "batch total 4097; allowed: 1..4096"},
		{"part past the total", capped, EncodedBatch{OutputID: "o", BatchOffset: 3, BatchTotal: 4, Frames: []Frame{small, small}}, ErrInvalid, "2 images at batch offset 3 do not fit a batch of 4"},
		{"negative offset", capped, EncodedBatch{OutputID: "o", BatchOffset: -1, BatchTotal: 4, Frames: []Frame{small}}, ErrInvalid, "do not fit a batch of 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.p.Encoded(context.Background(), tt.eb)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v; want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 0 {
		t.Fatalf("stream has %d messages; want 0", info.State.Msgs)
	}
	if _, err := Encode(context.Background(), Batch{OutputID: "o", Images: []image.Image{gray(1, 1)}, Quality: 101}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("quality 101: got %v; want ErrInvalid", err)
	}
	if _, err := Encode(context.Background(), Batch{OutputID: "o", Images: []image.Image{gray(1, 1), gray(1, 1)}, BatchOffset: 1, BatchTotal: 2}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("2 images at offset 1 of 2: got %v; want ErrInvalid", err)
	}
}

// TestBatchInParts publishes a batch of 5 in two parts, 0..2 and 3..4:
// every frame carries its index in the whole batch and the batch's size,
// and one idempotency key serves both parts without collisions.
func TestBatchInParts(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	parts := []Batch{
		{BatchOffset: 0, BatchTotal: 5, Images: []image.Image{gray(2, 2), gray(2, 2), gray(2, 2)}},
		{BatchOffset: 3, BatchTotal: 5, Images: []image.Image{gray(2, 2), gray(2, 2)}},
	}
	var acks []Ack
	for _, b := range parts {
		b.OutputID, b.Format, b.IdempotencyKey = "o", frame.PNG, "job-1"
		got, err := p.Images(context.Background(), b)
		if err != nil {
			t.Fatalf("part at %d: %v", b.BatchOffset, err)
		}
		acks = append(acks, got...)
	}
	for i, a := range acks {
		msg, m := stored(t, st, a.Seq)
		if a.BatchIndex != i || a.Duplicate || m.BatchIndex != i || m.BatchSize != 5 {
			t.Fatalf("frame %d: ack %+v, meta index %d of %d; want index %d of 5, not a duplicate", i, a, m.BatchIndex, m.BatchSize, i)
		}
		if got, want := msg.Header.Get(jetstream.MsgIDHeader), MsgID("o", "", "job-1", i); got != want {
			t.Fatalf("frame %d: Nats-Msg-Id %q; want %q", i, got, want)
		}
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 5 {
		t.Fatalf("stream has %d messages; want 5", info.State.Msgs)
	}
}

func TestIdempotentRetry(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	b := Batch{OutputID: "o", Format: frame.PNG, IdempotencyKey: "k1", Images: []image.Image{gray(2, 2), gray(2, 2)}}
	first, err := p.Images(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Images(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if first[i].Seq != again[i].Seq || !again[i].Duplicate {
			t.Fatalf("frame %d: seq %d then %d (duplicate %v); want the same seq, duplicate", i, first[i].Seq, again[i].Seq, again[i].Duplicate)
		}
	}
	msg, err := st.GetMsg(context.Background(), first[1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Header.Get(jetstream.MsgIDHeader), "k1/o.~all/1"; got != want {
		t.Fatalf("Nats-Msg-Id %q; want %q", got, want)
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 2 {
		t.Fatalf("stream has %d messages; want 2", info.State.Msgs)
	}
}

func TestUnavailable(t *testing.T) {
	js, _ := setup(t)
	p := New(js, Options{})
	js.Conn().Close()
	_, err := p.Images(context.Background(), Batch{OutputID: "o", Format: frame.PNG, Images: []image.Image{gray(1, 1)}})
	var pe *PartialError
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnavailable) || len(pe.Published) != 0 || pe.Failed != 0 {
		t.Fatalf("got %v; want a PartialError wrapping ErrUnavailable with nothing published", err)
	}
	// Previews are messages too, but the total counts the batch's images.
	_, err = p.Images(context.Background(), Batch{OutputID: "o", Format: frame.PNG, Previews: 16, Images: []image.Image{gray(32, 32), gray(32, 32)}})
	if !errors.As(err, &pe) || pe.Total != 2 {
		t.Fatalf("got %v; want a PartialError of a batch of 2 images", err)
	}
}

func TestPartialErrorMessage(t *testing.T) {
	e := &PartialError{Published: []Ack{{Seq: 7}, {Seq: 8, BatchIndex: 1}}, Failed: 2, Total: 5, Uncertain: true, Err: ErrUnavailable}
	want := "published 2 of 5 frames (batch_index 0..1, seq 7..8); frame 2 failed: broker unavailable; frame 2 may have been stored before the failure; frames 3..4 were not sent"
	if got := e.Error(); got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	part := &PartialError{Published: []Ack{{Seq: 9, BatchIndex: 5}}, Failed: 6, Offset: 5, Total: 3, Err: ErrUnavailable}
	want = "published 1 of 3 frames (batch_index 5..5, seq 9..9); frame 6 failed: broker unavailable; frames 7..7 were not sent"
	if got := part.Error(); got != want {
		t.Fatalf("part of a batch: got %q; want %q", got, want)
	}
}

// TestKeyScopedToOutput: one idempotency key used by two outputs, and by
// two clients of one output, stores every frame once under its own
// subject; only a retry for the same output and client is a duplicate. A
// large frame's object is scoped the same way.
func TestKeyScopedToOutput(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		object bool
	}{
		{"inline", Options{}, false},
		{"large", Options{InlineLimit: 1 << 10}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, st := setup(t)
			ctx := context.Background()
			p := New(js, tt.opts)
			targets := []struct{ oid, cid string }{{"a", ""}, {"b", ""}, {"a", "c1"}}
			seqs := map[uint64]bool{}
			objects := map[string]bool{}
			for i, tg := range targets {
				data := noisyPNG(t, 48, 48, uint64(10+i))
				eb := EncodedBatch{OutputID: tg.oid, ClientID: tg.cid, IdempotencyKey: "K", Frames: []Frame{{Data: data}}}
				acks, err := p.Encoded(ctx, eb)
				if err != nil {
					t.Fatalf("%s/%s: %v", tg.oid, tg.cid, err)
				}
				a := acks[0]
				if a.Duplicate || seqs[a.Seq] {
					t.Fatalf("%s/%s: ack %+v; want a new frame at a new seq", tg.oid, tg.cid, a)
				}
				seqs[a.Seq] = true
				msg, err := st.GetMsg(ctx, a.Seq)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := msg.Subject, subject.Frames(tg.oid, tg.cid); got != want {
					t.Fatalf("seq %d subject %q; want %q", a.Seq, got, want)
				}
				if got, want := msg.Header.Get(jetstream.MsgIDHeader), MsgID(tg.oid, tg.cid, "K", 0); got != want {
					t.Fatalf("%s/%s: Nats-Msg-Id %q; want %q", tg.oid, tg.cid, got, want)
				}
				if tt.object {
					if a.Object == "" || objects[a.Object] {
						t.Fatalf("%s/%s: object %q; want a name of its own", tg.oid, tg.cid, a.Object)
					}
					objects[a.Object] = true
					got, err := bucket(t, js).GetBytes(ctx, a.Object)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("%s/%s: object %q holds %d bytes, %v; want this frame's image", tg.oid, tg.cid, a.Object, len(got), err)
					}
				}
				again, err := p.Encoded(ctx, eb)
				if err != nil {
					t.Fatal(err)
				}
				if again[0].Seq != a.Seq || !again[0].Duplicate {
					t.Fatalf("%s/%s retry: ack %+v; want a duplicate of seq %d", tg.oid, tg.cid, again[0], a.Seq)
				}
			}
			if info, _ := st.Info(ctx); info.State.Msgs != uint64(len(targets)) {
				t.Fatalf("stream has %d messages; want %d", info.State.Msgs, len(targets))
			}
		})
	}
}
