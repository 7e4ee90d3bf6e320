package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/framecast/framecast/shared/frame"
)

// The seed node builds its frame as
//
//	struct.pack(">I", 1) + struct.pack(">I", image_type) +
//	output_id.encode("ascii").ljust(24, b"\0") + image_bytes
//
// These golden bytes were written out by hand from that layout.
func TestComfyGolden(t *testing.T) {
	tests := []struct {
		name   string
		oid    string
		format frame.Format
		img    []byte
		golden string
	}{
		{"webp", "output_id", frame.WEBP, []byte("RIFF"),
			"00000001" + "00000003" + hex.EncodeToString([]byte("output_id")) + strings.Repeat("00", 15) + "52494646"},
		{"png", "a", frame.PNG, []byte{0x89, 'P', 'N', 'G'},
			"00000001" + "00000002" + "61" + strings.Repeat("00", 23) + "89504e47"},
		{"jpeg full width id", "abcdefghijklmnopqrstuvwx", frame.JPEG, []byte{0xff, 0xd8},
			"00000001" + "00000001" + hex.EncodeToString([]byte("abcdefghijklmnopqrstuvwx")) + "ffd8"},
		{"empty image", "x.y", frame.WEBP, nil,
			"00000001" + "00000003" + "782e79" + strings.Repeat("00", 21)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeComfy(tt.oid, tt.format, tt.img)
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != tt.golden {
				t.Fatalf("got  %s\nwant %s", h, tt.golden)
			}
			fr, err := DecodeComfy(got)
			if err != nil {
				t.Fatal(err)
			}
			if fr.OutputID != tt.oid || fr.Format != tt.format || !bytes.Equal(fr.Image, tt.img) {
				t.Fatalf("decoded %+v; want %q %v %x", fr, tt.oid, tt.format, tt.img)
			}
		})
	}
}

func TestComfyRefuses(t *testing.T) {
	if _, err := EncodeComfy(strings.Repeat("a", 25), frame.PNG, nil); err == nil {
		t.Fatal("EncodeComfy accepted a 25-byte output id")
	}
	if _, err := EncodeComfy("a", frame.Format(9), nil); err == nil {
		t.Fatal("EncodeComfy accepted image type 9")
	}
	good, _ := EncodeComfy("abc", frame.PNG, []byte("x"))
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", good[:31]},
		{"event 2", append([]byte{0, 0, 0, 2}, good[4:]...)},
		{"type 4", append(append([]byte{}, good[:4]...), append([]byte{0, 0, 0, 4}, good[8:]...)...)},
		{"junk after padding", append(append([]byte{}, good[:20]...), append([]byte{'z'}, good[21:]...)...)},
		{"empty id", append(append([]byte{}, good[:8]...), make([]byte, 24)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeComfy(tt.b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v; want ErrMalformed", err)
			}
		})
	}
}

func TestNativeRoundTrip(t *testing.T) {
	m := frame.Meta{OutputID: "o", ClientID: "c", Format: frame.WEBP, Width: 3, Height: 2, BatchIndex: 1, BatchSize: 2, Timestamp: 42}
	h := HeaderOf(17, m)
	b := EncodeNative(h, []byte("image"))
	got, img, err := DecodeNative(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != h || string(img) != "image" {
		t.Fatalf("got %+v %q; want %+v %q", got, img, h, "image")
	}
	want := `{"seq":17,"output_id":"o","client_id":"c","content_type":"image/webp","width":3,"height":2,"batch_index":1,"batch_size":2,"ts":42,"rendition":"full"}`
	if js := string(b[4 : len(b)-5]); js != want {
		t.Fatalf("header JSON %s; want %s", js, want)
	}
	if b[0] != 0 || b[1] != 0 || b[2] != 0 || int(b[3]) != len(want) {
		t.Fatalf("length prefix % x; want big-endian %d", b[:4], len(want))
	}
}

func TestNativeRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          {0, 0},
		"length too big": {0, 0, 0, 9, '{', '}'},
		"over limit":     {0, 1, 0, 0},
		"not json":       {0, 0, 0, 2, 'x', 'y'},
	} {
		if _, _, err := DecodeNative(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v; want ErrMalformed", name, err)
		}
	}
}

func TestControl(t *testing.T) {
	if got := string(Status("abc")); got != `{"event":"status","data":{"sid":"abc"}}` {
		t.Fatalf("Status = %s", got)
	}
	c, err := DecodeControl(EncodeControl(Control{Type: TypeGap, From: 3, To: 9}))
	if err != nil || c.Type != TypeGap || c.From != 3 || c.To != 9 {
		t.Fatalf("gap round trip: %+v, %v", c, err)
	}
	if _, err := DecodeControl([]byte(`{"from":1}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("untyped control: got %v; want ErrMalformed", err)
	}
}

func FuzzDecodeNative(f *testing.F) {
	f.Add(EncodeNative(Header{Seq: 1, OutputID: "o"}, []byte("x")))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, img, err := DecodeNative(b)
		if err != nil {
			return
		}
		if len(img) > len(b) {
			t.Fatalf("image of %d bytes from a %d-byte frame", len(img), len(b))
		}
		h2, img2, err := DecodeNative(EncodeNative(h, img))
		if err != nil || h2 != h || !bytes.Equal(img2, img) {
			t.Fatalf("re-encode: %+v %v", h2, err)
		}
	})
}

func FuzzDecodeComfy(f *testing.F) {
	b, _ := EncodeComfy("output_id", frame.WEBP, []byte("RIFF"))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeComfy(b)
		if err != nil {
			return
		}
		again, err := EncodeComfy(fr.OutputID, fr.Format, fr.Image)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encode of %x = %x, %v", b, again, err)
		}
	})
}

func FuzzDecodeControl(f *testing.F) {
	f.Add([]byte(`{"type":"gap","from":1,"to":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeControl(b)
		if err != nil {
			return
		}
		if c.Type == "" {
			t.Fatal("accepted a control message without type")
		}
	})
}

func TestEventControl(t *testing.T) {
	e, err := DecodeEvent([]byte(`{"event":"progress","data":{"value":3,"max":20}}`))
	if err != nil || e.Event != "progress" || string(e.Data) != `{"value":3,"max":20}` {
		t.Fatalf("DecodeEvent: got %+v, %v", e, err)
	}
	seq := uint64(7)
	got := string(EncodeControl(Control{Type: TypeEvent, Event: e.Event, Data: e.Data, Seq: &seq}))
	if want := `{"type":"event","seq":7,"event":"progress","data":{"value":3,"max":20}}`; got != want {
		t.Fatalf("event control: got %s; want %s", got, want)
	}
	raw := json.RawMessage(`{ "html": "<b>&</b>",  "n": 1 }`)
	ev := EncodeEvent(9, "a<b", raw)
	if want := `{"type":"event","seq":9,"event":"a<b","data":{ "html": "<b>&</b>",  "n": 1 }}`; string(ev) != want {
		t.Fatalf("EncodeEvent: got %s; want %s", ev, want)
	}
	if c, err := DecodeControl(ev); err != nil || c.Type != TypeEvent || *c.Seq != 9 || c.Event != "a<b" || string(c.Data) != string(raw) {
		t.Fatalf("EncodeEvent decodes to %+v, %v", c, err)
	}
	for _, bad := range []string{`{}`, `{"event":"x"}`, `{"event":"x","data":[1]}`, `{"event":"","data":{}}`, `nope`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("DecodeEvent(%s): got no error", bad)
		}
	}
}

func TestNativePreviewHeader(t *testing.T) {
	m := frame.Meta{OutputID: "o", Format: frame.WEBP, Width: 128, Height: 96, BatchSize: 1, Timestamp: 42, Rendition: frame.Preview}
	got, _, err := DecodeNative(EncodeNative(HeaderOf(5, m), []byte("p")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Rendition != "preview" {
		t.Fatalf("rendition %q; want %q", got.Rendition, "preview")
	}
}
