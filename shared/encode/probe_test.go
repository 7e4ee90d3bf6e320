package encode

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/framecast/framecast/shared/frame"
)

func TestProbe(t *testing.T) {
	m := mustImage(t, testPixels(33, 17, 3))
	enc := map[string][]byte{}
	for _, tt := range []struct {
		f frame.Format
		q int
	}{{frame.JPEG, 80}, {frame.PNG, 80}, {frame.WEBP, 80}, {frame.WEBP, 100}} {
		b, err := Encode(m, tt.f, tt.q)
		if err != nil {
			t.Fatal(err)
		}
		enc[fmt.Sprintf("%s-q%d", tt.f, tt.q)] = b
	}
	huge := hugePNG(t, 100000, 100000)
	tests := []struct {
		name    string
		b       []byte
		want    Info
		wantErr error
		wantMsg string
	}{
		{"jpeg", enc["jpeg-q80"], Info{frame.JPEG, 33, 17}, nil, ""},
		{"png", enc["png-q80"], Info{frame.PNG, 33, 17}, nil, ""},
		{"webp lossy", enc["webp-q80"], Info{frame.WEBP, 33, 17}, nil, ""},
		{"webp lossless", enc["webp-q100"], Info{frame.WEBP, 33, 17}, nil, ""},
		{"truncated png", cut(enc["png-q80"], 0.7), Info{}, ErrCorrupt, "png"},
		{"png without IEND", cut(enc["png-q80"], 1), Info{}, ErrCorrupt, "png"},
		{"truncated jpeg", cut(enc["jpeg-q80"], 0.7), Info{}, ErrCorrupt, "jpeg"},
		{"truncated webp", cut(enc["webp-q80"], 0.7), Info{}, ErrCorrupt, "webp"},
		{"truncated lossless webp", cut(enc["webp-q100"], 0.7), Info{}, ErrCorrupt, "webp"},
		{"png header only", enc["png-q80"][:8], Info{}, ErrCorrupt, "png header"},
		{"huge png", huge, Info{}, ErrTooLarge, "100000x100000"},
		{"gif", []byte("GIF89a\x01\x00\x01\x00"), Info{}, ErrUnsupported, "not a JPEG, PNG or WEBP image"},
		{"empty", nil, Info{}, ErrUnsupported, "0 bytes"},
		{"riff but not webp", []byte("RIFF\x04\x00\x00\x00WAVE"), Info{}, ErrUnsupported, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Probe(tt.b)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Probe: %v", err)
				}
				if got != tt.want {
					t.Errorf("Probe = %+v; want %+v", got, tt.want)
				}
				return
			}
			checkErr(t, "Probe", err, tt.wantErr, tt.wantMsg)
		})
	}
}

// cut returns the first frac of b; frac 1 drops only the last 12 bytes (a
// PNG's IEND chunk).
func cut(b []byte, frac float64) []byte {
	if frac == 1 {
		return b[:len(b)-12]
	}
	return b[:int(float64(len(b))*frac)]
}

// hugePNG returns a tiny PNG whose header claims w×h pixels.
func hugePNG(t *testing.T, w, h uint32) []byte {
	t.Helper()
	b, err := Encode(mustImage(t, testPixels(1, 1, 1)), frame.PNG, 80)
	if err != nil {
		t.Fatal(err)
	}
	b = append([]byte(nil), b...)
	// Signature (8), IHDR length (4), "IHDR" (4), width, height, ..., CRC.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// FuzzProbe feeds Probe arbitrary bytes, seeded with small valid images of
// every format: it must never panic, and what it accepts must be a
// decodable image within MaxPixels.
func FuzzProbe(f *testing.F) {
	m, err := Image(testPixels(9, 7, 3))
	if err != nil {
		f.Fatal(err)
	}
	for _, tt := range []struct {
		format  frame.Format
		quality int
	}{{frame.JPEG, 80}, {frame.PNG, 80}, {frame.WEBP, 80}, {frame.WEBP, 100}} {
		b, err := Encode(m, tt.format, tt.quality)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Probe(b)
		if err != nil {
			return
		}
		if !info.Format.Valid() || info.Width < 1 || info.Height < 1 || info.Width*info.Height > MaxPixels {
			t.Fatalf("Probe accepted %d bytes as %+v", len(b), info)
		}
	})
}
