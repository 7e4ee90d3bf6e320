package publish

import (
	"bytes"
	"context"
	"errors"
	"image"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/stream"
)

// noisyPNG is a PNG that does not compress: about 3 bytes per pixel.
func noisyPNG(t *testing.T, w, h int, seed uint64) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range m.Pix {
		m.Pix[i] = uint8(r.UintN(256))
		if i%4 == 3 {
			m.Pix[i] = 255
		}
	}
	b, err := encode.Encode(m, frame.PNG, 80)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bucket(t *testing.T, js jetstream.JetStream) jetstream.ObjectStore {
	t.Helper()
	c, _ := stream.Config{}.WithDefaults()
	obs, err := js.ObjectStore(context.Background(), c.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

func TestLargeFrameByReference(t *testing.T) {
	js, st := setup(t)
	ctx := context.Background()
	p := New(js, Options{InlineLimit: 64 << 10})
	large := noisyPNG(t, 200, 200, 1)
	if len(large) <= 64<<10 {
		t.Fatalf("test image is %d bytes; want more than the 64 KiB inline limit", len(large))
	}
	small := noisyPNG(t, 8, 8, 2)
	acks, err := p.Encoded(ctx, EncodedBatch{OutputID: "o", ClientID: "c", Frames: []Frame{{Data: small}, {Data: large}, {Data: small}}})
	if err != nil {
		t.Fatal(err)
	}
	obs := bucket(t, js)
	for i, want := range [][]byte{small, large, small} {
		a := acks[i]
		if a.Bytes != len(want) || a.Width == 0 {
			t.Fatalf("ack %d: %+v; want %d bytes and the probed size", i, a, len(want))
		}
		msg, err := st.GetMsg(ctx, a.Seq)
		if err != nil {
			t.Fatal(err)
		}
		m, err := frame.Decode(msg.Header)
		if err != nil {
			t.Fatal(err)
		}
		if i != 1 {
			if m.Object != "" || a.Object != "" || !bytes.Equal(msg.Data, want) {
				t.Fatalf("frame %d: object %q, %d bytes inline; want the image inline", i, m.Object, len(msg.Data))
			}
			continue
		}
		if len(msg.Data) != 0 || m.Object == "" || m.Object != a.Object || m.ObjectSize != int64(len(large)) {
			t.Fatalf("frame 1: %d bytes inline, meta %+v, ack %+v; want an empty body referring to a %d-byte object", len(msg.Data), m, a, len(large))
		}
		got, err := obs.GetBytes(ctx, m.Object)
		if err != nil {
			t.Fatalf("get object %q: %v", m.Object, err)
		}
		if !bytes.Equal(got, large) {
			t.Fatalf("object %q: %d bytes, different from the %d bytes published", m.Object, len(got), len(large))
		}
	}
}

func TestLargeFrameDefaultInlineLimit(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		payload int64
		want    int64
	}{
		{"8 MiB server", Options{}, 8 << 20, DefaultInlineLimit},
		{"1 MiB server keeps headroom", Options{}, 1 << 20, 1<<20 - PayloadHeadroom},
		{"set", Options{InlineLimit: 5000}, 8 << 20, 5000},
		{"inline only", Options{InlineLimit: -1}, 8 << 20, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(nil, tt.opts).inlineLimit(tt.payload); got != tt.want {
				t.Fatalf("got %d; want %d", got, tt.want)
			}
		})
	}
}

func TestLargeFrameIdempotentRetry(t *testing.T) {
	js, st := setup(t)
	ctx := context.Background()
	p := New(js, Options{InlineLimit: 64 << 10})
	large := noisyPNG(t, 200, 200, 3)
	eb := EncodedBatch{OutputID: "o", IdempotencyKey: "key 1/a", Frames: []Frame{{Data: large}}}
	first, err := p.Encoded(ctx, eb)
	if err != nil {
		t.Fatal(err)
	}
	obs := bucket(t, js)
	info, err := obs.GetInfo(ctx, first[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	if want := "key~201~2Fa/o.~all/0"; first[0].Object != want {
		t.Fatalf("object name %q; want %q (escaped key / output.client / batch index)", first[0].Object, want)
	}
	again, err := p.Encoded(ctx, eb)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Seq != first[0].Seq || !again[0].Duplicate || again[0].Object != first[0].Object {
		t.Fatalf("retry ack %+v; want seq %d, duplicate, object %q", again[0], first[0].Seq, first[0].Object)
	}
	info2, err := obs.GetInfo(ctx, first[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	if info2.NUID != info.NUID {
		t.Fatalf("object stored again on retry (nuid %s then %s); want it stored once", info.NUID, info2.NUID)
	}
	if s, _ := st.Info(ctx); s.State.Msgs != 1 {
		t.Fatalf("stream has %d messages; want 1", s.State.Msgs)
	}

	// The same key for other content leaves the stored frame intact.
	other := eb
	other.Frames = []Frame{{Data: noisyPNG(t, 200, 200, 4)}}
	acks, err := p.Encoded(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if !acks[0].Duplicate || acks[0].Object == first[0].Object {
		t.Fatalf("reused key ack %+v; want a duplicate stored under another name", acks[0])
	}
	got, err := obs.GetBytes(ctx, first[0].Object)
	if err != nil || !bytes.Equal(got, large) {
		t.Fatalf("first object after key reuse: %d bytes, %v; want the first image", len(got), err)
	}
}

func TestLargeFrameNoBucket(t *testing.T) {
	js, _ := setup(t)
	ctx := context.Background()
	p := New(js, Options{InlineLimit: 1024, Bucket: "MISSING"})
	_, err := p.Encoded(ctx, EncodedBatch{OutputID: "o", Frames: []Frame{{Data: noisyPNG(t, 8, 8, 5)}, {Data: noisyPNG(t, 64, 64, 6)}}})
	var pe *PartialError
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnavailable) || len(pe.Published) != 1 || pe.Failed != 1 || pe.Uncertain ||
		!strings.Contains(err.Error(), "bucket MISSING does not exist") {
		t.Fatalf("got %v; want a PartialError wrapping ErrUnavailable: frame 0 stored, frame 1 failed certainly, naming the bucket", err)
	}
}
