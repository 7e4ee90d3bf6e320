package publish

import (
	"context"
	"errors"
	"image"
	"image/color"
	"strings"
	"testing"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
)

// gradient is a w×h RGBA image whose pixels differ, so a scaled copy is
// not trivially uniform.
func gradient(w, h int) image.Image {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	return m
}

func TestPreviewsPublishedBeforeTheirFrames(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{})
	acks, err := p.Images(context.Background(), Batch{
		OutputID: "out", ClientID: "c", Format: frame.PNG, Previews: 128, IdempotencyKey: "k1",
		Images: []image.Image{gradient(512, 384), gradient(100, 300), gradient(64, 48)},
	})
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	want := []struct {
		rendition     frame.Rendition
		index         int
		width, height int
		format        frame.Format
	}{
		{frame.Preview, 0, 128, 96, frame.WEBP}, {frame.Full, 0, 512, 384, frame.PNG},
		{frame.Preview, 1, 42, 128, frame.WEBP}, {frame.Full, 1, 100, 300, frame.PNG},
		{frame.Preview, 2, 64, 48, frame.WEBP}, {frame.Full, 2, 64, 48, frame.PNG}, // never enlarged
	}
	if len(acks) != len(want) {
		t.Fatalf("got %d acks; want %d", len(acks), len(want))
	}
	for k, w := range want {
		a := acks[k]
		msg, m := stored(t, st, a.Seq)
		if k > 0 && a.Seq != acks[k-1].Seq+1 {
			t.Errorf("ack %d: seq %d; want %d (in publish order)", k, a.Seq, acks[k-1].Seq+1)
		}
		if a.Rendition != w.rendition || m.Rendition != w.rendition || a.BatchIndex != w.index || m.BatchIndex != w.index ||
			m.Width != w.width || m.Height != w.height || m.Format != w.format {
			t.Errorf("message %d: ack %+v meta %+v; want %+v", k, a, m, w)
		}
		in, err := encode.Probe(msg.Data)
		if err != nil || in.Width != w.width || in.Height != w.height || in.Format != w.format {
			t.Errorf("message %d: image %+v, %v; want %dx%d %v", k, in, err, w.width, w.height, w.format)
		}
	}

	// A retry with the same key stores nothing twice, previews included.
	again, err := p.Images(context.Background(), Batch{
		OutputID: "out", ClientID: "c", Format: frame.PNG, Previews: 128, IdempotencyKey: "k1",
		Images: []image.Image{gradient(512, 384), gradient(100, 300), gradient(64, 48)},
	})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	for k, a := range again {
		if !a.Duplicate || a.Seq != acks[k].Seq || a.Rendition != acks[k].Rendition {
			t.Errorf("retry ack %d: %+v; want a duplicate of %+v", k, a, acks[k])
		}
	}
}

func TestPreviewsOfEncodedFrames(t *testing.T) {
	eb, err := Encode(context.Background(), Batch{OutputID: "o", Format: frame.JPEG, Images: []image.Image{gradient(300, 200)}})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := Previews(context.Background(), eb.Frames, 30)
	if err != nil {
		t.Fatalf("Previews: %v", err)
	}
	if len(pv) != 1 || pv[0].Width != 30 || pv[0].Height != 20 || pv[0].Format != frame.WEBP {
		t.Fatalf("previews %+v; want one 30x20 WEBP", pv)
	}
	in, err := encode.Probe(pv[0].Data)
	if err != nil || in.Width != 30 || in.Height != 20 {
		t.Fatalf("preview decodes as %+v, %v; want 30x20", in, err)
	}
}

func TestPreviewOfDecodedImage(t *testing.T) {
	p, err := Preview(context.Background(), gradient(100, 300), 60)
	if err != nil {
		t.Fatalf("Preview: %v", err)
	}
	in, err := encode.Probe(p.Data)
	if err != nil || p.Width != 20 || p.Height != 60 || p.Format != frame.WEBP || in.Width != 20 || in.Height != 60 || in.Format != frame.WEBP {
		t.Fatalf("preview %dx%d %v, decodes as %+v (%v); want a 20x60 WEBP", p.Width, p.Height, p.Format, in, err)
	}
	for _, side := range []int{0, 15, 1025} {
		if _, err := Preview(context.Background(), gradient(10, 10), side); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "previews") {
			t.Errorf("side %d: got %v; want ErrInvalid naming previews", side, err)
		}
	}
}

func TestPreviewsRefused(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
	}{
		{"side below 16", func() error {
			_, err := Encode(context.Background(), Batch{OutputID: "o", Images: []image.Image{gray(4, 4)}, Previews: 15})
			return err
		}},
		{"side above 1024", func() error {
			_, err := Previews(context.Background(), []Frame{{Data: []byte("x")}}, 1025)
			return err
		}},
		{"frame that does not decode", func() error {
			_, err := Previews(context.Background(), []Frame{{Data: []byte("not an image")}}, 64)
			return err
		}},
		{"previews not one per frame", func() error {
			js, _ := setup(t)
			_, err := New(js, Options{}).Encoded(context.Background(), EncodedBatch{OutputID: "o",
				Frames: []Frame{{Data: []byte("a")}, {Data: []byte("b")}}, Previews: []Frame{{Data: []byte("p")}}})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v; want ErrInvalid", err)
			}
		})
	}
}

// TestLargePreviewByReference: a preview over the inline limit is stored
// in the bucket like a large frame, under its image's object name with
// "/preview" appended, and a retry with the same key reuses both objects.
func TestLargePreviewByReference(t *testing.T) {
	js, st := setup(t)
	p := New(js, Options{InlineLimit: 16})
	b := Batch{OutputID: "o", Format: frame.PNG, Previews: 64, IdempotencyKey: "k", Images: []image.Image{gradient(200, 100)}}
	acks, err := p.Images(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 2 || acks[0].Object == "" || acks[0].Object != acks[1].Object+"/preview" {
		t.Fatalf("acks %+v; want a preview stored as <its image's object>/preview", acks)
	}
	obs := bucket(t, js)
	for _, a := range acks {
		got, err := obs.GetBytes(context.Background(), a.Object)
		if err != nil || len(got) != a.Bytes {
			t.Fatalf("object %s: %d bytes, %v; want %d", a.Object, len(got), err, a.Bytes)
		}
		if _, m := stored(t, st, a.Seq); m.Object != a.Object || m.Rendition != a.Rendition {
			t.Fatalf("stored %+v; want the reference %s of rendition %v", m, a.Object, a.Rendition)
		}
	}
	again, err := p.Images(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	for k, a := range again {
		if !a.Duplicate || a.Object != acks[k].Object {
			t.Errorf("retry ack %d: %+v; want a duplicate with object %s", k, a, acks[k].Object)
		}
	}
}
