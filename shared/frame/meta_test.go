package frame

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
)

func sample() Meta {
	return Meta{OutputID: "out.1", ClientID: "c 1", Format: WEBP, Width: 640, Height: 480, BatchIndex: 2, BatchSize: 4, Timestamp: 1764158400123}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{sample(), {OutputID: "o", Format: PNG, Width: 1, Height: 1, BatchSize: 1, Object: "obj-1"},
		{OutputID: "o", Format: PNG, Width: 1, Height: 1, BatchSize: 1, Object: "k/0", ObjectSize: 5 << 20},
		{OutputID: "o", Format: WEBP, Width: 128, Height: 96, BatchSize: 1, Rendition: Preview}} {
		h := nats.Header{}
		m.Header(h)
		got, err := Decode(h)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if got != m {
			t.Fatalf("got %+v; want %+v", got, m)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(h nats.Header)
	}{
		{"no content type", func(h nats.Header) { h.Del(HeaderContentType) }},
		{"text content type", func(h nats.Header) { h.Set(HeaderContentType, "text/plain") }},
		{"no output id", func(h nats.Header) { h.Del(HeaderOutputID) }},
		{"long output id", func(h nats.Header) { h.Set(HeaderOutputID, "0123456789012345678901234") }},
		{"width not int", func(h nats.Header) { h.Set(HeaderWidth, "wide") }},
		{"zero height", func(h nats.Header) { h.Set(HeaderHeight, "0") }},
		{"huge width", func(h nats.Header) { h.Set(HeaderWidth, "99999999") }},
		{"index past size", func(h nats.Header) { h.Set(HeaderBatchIndex, "4") }},
		{"negative index", func(h nats.Header) { h.Set(HeaderBatchIndex, "-1") }},
		{"no timestamp", func(h nats.Header) { h.Del(HeaderTimestamp) }},
		{"control in client id", func(h nats.Header) { h.Set(HeaderClientID, "a\x01") }},
		{"object size not int", func(h nats.Header) { h.Set(HeaderObject, "k/0"); h.Set(HeaderObjectSize, "big") }},
		{"negative object size", func(h nats.Header) { h.Set(HeaderObject, "k/0"); h.Set(HeaderObjectSize, "-1") }},
		{"object size without object", func(h nats.Header) { h.Set(HeaderObjectSize, "10") }},
		{"unknown rendition", func(h nats.Header) { h.Set(HeaderRendition, "thumbnail") }},
		{"rendition in another case", func(h nats.Header) { h.Set(HeaderRendition, "Preview") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := nats.Header{}
			sample().Header(h)
			tt.edit(h)
			if _, err := Decode(h); err == nil {
				t.Fatalf("Decode accepted %v", h)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"webp": WEBP, "WEBP": WEBP, "Png": PNG, "jpeg": JPEG, "JPG": JPEG} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "gif", "web p"} {
		if _, err := ParseFormat(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseFormat(%q) err = %v; want ErrInvalid", in, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	h := nats.Header{}
	sample().Header(h)
	f.Add(h.Get(HeaderContentType), h.Get(HeaderOutputID), h.Get(HeaderClientID), "640", "480", "2", "4", "1764158400123", "")
	f.Add(h.Get(HeaderContentType), h.Get(HeaderOutputID), h.Get(HeaderClientID), "640", "480", "2", "4", "1764158400123", "preview")
	f.Fuzz(func(t *testing.T, ct, oid, cid, w, hh, bi, bs, ts, rendition string) {
		h := nats.Header{}
		for k, v := range map[string]string{HeaderContentType: ct, HeaderOutputID: oid, HeaderClientID: cid, HeaderWidth: w, HeaderHeight: hh, HeaderBatchIndex: bi, HeaderBatchSize: bs, HeaderTimestamp: ts, HeaderRendition: rendition} {
			h.Set(k, v)
		}
		m, err := Decode(h)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Decode returned invalid meta %+v: %v", m, err)
		}
		h2 := nats.Header{}
		m.Header(h2)
		m2, err := Decode(h2)
		if err != nil || m2 != m {
			t.Fatalf("round trip: got %+v, %v; want %+v", m2, err, m)
		}
	})
}
