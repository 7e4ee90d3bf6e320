package encode

import (
	"encoding/binary"
	"errors"
	"image"
	"math"
	"strings"
	"testing"
)

func TestFromFloat32(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint8
	}{
		{"one", 1.0, 255},
		{"just below one truncates", 0.999, 254},
		{"half truncates", 0.5, 127},
		{"zero", 0, 0},
		{"negative zero", float32(math.Copysign(0, -1)), 0},
		{"negative clips", -0.5, 0},
		{"above one clips", 2, 255},
		{"NaN", float32(math.NaN()), 0},
		{"+Inf", float32(math.Inf(1)), 255},
		{"-Inf", float32(math.Inf(-1)), 0},
		{"one step", 1.0 / 255, 1},
		{"just under one step", 0.0039, 0},
		{"largest below one", math.Nextafter32(1, 0), 254},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []uint8{42}
			if n := FromFloat32(dst, []float32{tt.in}); n != 1 {
				t.Fatalf("FromFloat32 converted %d values; want 1", n)
			}
			if dst[0] != tt.want {
				t.Errorf("FromFloat32(%v) = %d; want %d", tt.in, dst[0], tt.want)
			}
			le := binary.LittleEndian.AppendUint32(nil, math.Float32bits(tt.in))
			dst[0] = 42
			if n := FromFloat32LE(dst, le); n != 1 {
				t.Fatalf("FromFloat32LE converted %d values; want 1", n)
			}
			if dst[0] != tt.want {
				t.Errorf("FromFloat32LE(%v) = %d; want %d", tt.in, dst[0], tt.want)
			}
		})
	}
}

func TestFromFloat32Lengths(t *testing.T) {
	tests := []struct {
		name         string
		dst, src, le int // lengths; le is in bytes
		want         int
	}{
		{"equal", 4, 4, 16, 4},
		{"short dst", 2, 4, 16, 2},
		{"short src", 4, 3, 12, 3},
		{"ragged bytes", 4, 3, 14, 3},
		{"empty", 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromFloat32(make([]uint8, tt.dst), make([]float32, tt.src)); got != tt.want {
				t.Errorf("FromFloat32 = %d; want %d", got, tt.want)
			}
			if got := FromFloat32LE(make([]uint8, tt.dst), make([]byte, tt.le)); got != tt.want {
				t.Errorf("FromFloat32LE = %d; want %d", got, tt.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	s := Shape{Batch: 2, Height: 3, Width: 2, Channels: 3}
	raw := make([]byte, 36)
	for i := range raw {
		raw[i] = byte(i)
	}
	got, err := SplitUint8(raw, s)
	if err != nil {
		t.Fatalf("SplitUint8: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d images; want 2", len(got))
	}
	for i, p := range got {
		if p.Width != 2 || p.Height != 3 || p.Channels != 3 || len(p.Pix) != 18 || p.Pix[0] != byte(18*i) {
			t.Errorf("image %d: got %dx%dx%d, %d bytes, first %d; want 2x3x3, 18 bytes, first %d",
				i, p.Width, p.Height, p.Channels, len(p.Pix), p.Pix[0], 18*i)
		}
	}
	raw[18] = 99
	if got[1].Pix[0] != 99 {
		t.Errorf("SplitUint8 copied; want images that alias raw")
	}
	if cap(got[0].Pix) != 18 {
		t.Errorf("cap of image 0 is %d; want 18, so appends cannot spill into image 1", cap(got[0].Pix))
	}

	f := make([]byte, 0, 4*36)
	for i := range 36 {
		f = binary.LittleEndian.AppendUint32(f, math.Float32bits(float32(i)/35))
	}
	fp, err := SplitFloat32LE(f, s)
	if err != nil {
		t.Fatalf("SplitFloat32LE: %v", err)
	}
	for i, p := range fp {
		for j, v := range p.Pix {
			k := 18*i + j
			if want := toUint8(float32(k) / 35); v != want {
				t.Fatalf("image %d sample %d = %d; want %d", i, j, v, want)
			}
		}
	}
	if fp[1].Pix[17] != 255 {
		t.Errorf("last sample = %d; want 255", fp[1].Pix[17])
	}
}

func TestSplitErrors(t *testing.T) {
	tests := []struct {
		name    string
		shape   Shape
		n       int // uint8 body length; float32 bodies are 4n
		wantErr error
		wantMsg string
		wantF   string // for float32 when it differs
	}{
		{"short body", Shape{1, 2, 2, 3}, 11, ErrInvalid, "uint8 body is 11 bytes; expected 12", "float32 body is 44 bytes; expected 48"},
		{"long body", Shape{2, 2, 2, 3}, 25, ErrInvalid, "uint8 body is 25 bytes; expected 24", "float32 body is 100 bytes; expected 96"},
		{"zero batch", Shape{0, 2, 2, 3}, 0, ErrInvalid, "batch 0 is not positive", ""},
		{"zero width", Shape{1, 2, 0, 3}, 0, ErrInvalid, "width 0 is not positive", ""},
		{"negative height", Shape{1, -2, 2, 3}, 0, ErrInvalid, "height -2 is not positive", ""},
		{"two channels", Shape{1, 2, 2, 2}, 8, ErrInvalid, "channels 2 is not supported; allowed: 1, 3, 4", ""},
		{"too many pixels", Shape{1, 1 << 14, 1<<12 + 1, 3}, 0, ErrTooLarge, "pixels", ""},
		{"overflowing batch", Shape{math.MaxInt / 4, 1 << 13, 1 << 13, 4}, 0, ErrTooLarge, "too large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SplitUint8(make([]byte, tt.n), tt.shape)
			checkErr(t, "SplitUint8", err, tt.wantErr, tt.wantMsg)
			_, err = SplitFloat32LE(make([]byte, 4*tt.n), tt.shape)
			if tt.wantF == "" {
				tt.wantF = tt.wantMsg
			}
			checkErr(t, "SplitFloat32LE", err, tt.wantErr, tt.wantF)
		})
	}
}

func checkErr(t *testing.T, what string, err, wantErr error, wantMsg string) {
	t.Helper()
	if !errors.Is(err, wantErr) {
		t.Errorf("%s: got error %v; want %v", what, err, wantErr)
		return
	}
	if !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("%s: got error %q; want it to contain %q", what, err, wantMsg)
	}
}

func TestImage(t *testing.T) {
	tests := []struct {
		name     string
		channels int
		wantType string
		aliases  bool
	}{
		{"gray", 1, "*image.Gray", true},
		{"rgb", 3, "*image.RGBA", false},
		{"rgba", 4, "*image.NRGBA", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPixels(5, 3, tt.channels)
			m := mustImage(t, p)
			var (
				pix  []uint8
				got  string
				want = want(p)
			)
			switch m := m.(type) {
			case *image.Gray:
				got, pix = "*image.Gray", m.Pix
			case *image.RGBA:
				got, pix = "*image.RGBA", m.Pix
			case *image.NRGBA:
				got, pix = "*image.NRGBA", m.Pix
			}
			if got != tt.wantType {
				t.Fatalf("Image returned %T; want %s", m, tt.wantType)
			}
			if b := m.Bounds(); b != want.Rect {
				t.Fatalf("bounds %v; want %v", b, want.Rect)
			}
			for y := range p.Height {
				for x := range p.Width {
					if g, w := m.At(x, y), want.At(x, y); !sameColor(g, w) {
						t.Fatalf("pixel (%d,%d) = %v; want %v", x, y, g, w)
					}
				}
			}
			if aliased := &pix[0] == &p.Pix[0]; aliased != tt.aliases {
				t.Errorf("image shares Pix: got %v; want %v", aliased, tt.aliases)
			}
		})
	}
}

func sameColor(a, b interface{ RGBA() (r, g, b, a uint32) }) bool {
	r1, g1, b1, a1 := a.RGBA()
	r2, g2, b2, a2 := b.RGBA()
	return r1 == r2 && g1 == g2 && b1 == b2 && a1 == a2
}

func TestImageErrors(t *testing.T) {
	tests := []struct {
		name    string
		p       Pixels
		wantErr error
		wantMsg string
	}{
		{"short pix", Pixels{2, 2, 3, make([]uint8, 11)}, ErrInvalid, "pixels are 11 bytes; expected 12"},
		{"long pix", Pixels{2, 2, 1, make([]uint8, 5)}, ErrInvalid, "pixels are 5 bytes; expected 4"},
		{"nil pix", Pixels{2, 2, 4, nil}, ErrInvalid, "pixels are 0 bytes; expected 16"},
		{"zero width", Pixels{0, 2, 3, nil}, ErrInvalid, "width 0 is not positive"},
		{"zero height", Pixels{2, 0, 3, nil}, ErrInvalid, "height 0 is not positive"},
		{"no channels", Pixels{2, 2, 0, nil}, ErrInvalid, "channels 0 is not supported; allowed: 1, 3, 4"},
		{"five channels", Pixels{2, 2, 5, make([]uint8, 20)}, ErrInvalid, "channels 5 is not supported"},
		{"overflow", Pixels{math.MaxInt / 2, 3, 3, nil}, ErrTooLarge, "pixels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Image(tt.p)
			if m != nil {
				t.Errorf("got image %T; want nil", m)
			}
			checkErr(t, "Image", err, tt.wantErr, tt.wantMsg)
		})
	}
}
