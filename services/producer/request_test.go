package producer

import (
	"net/http"
	"strings"
	"testing"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, query, ctype string
		want               request
	}{
		{"defaults", "", "image/png", request{format: frame.WEBP, quality: 80, kind: bodyImage, declared: frame.PNG}},
		{"raw", "width=3&height=2&channels=4&dtype=Float32&batch=5&file_type=JPEG&quality=1&client_id=c", "application/octet-stream",
			request{clientID: "c", format: frame.JPEG, formatSet: true, quality: 1, kind: bodyRaw,
				shape: encode.Shape{Batch: 5, Height: 2, Width: 3, Channels: 4}, dtype: "float32"}},
		{"multipart", "", "multipart/form-data; boundary=xyz", request{format: frame.WEBP, quality: 80, kind: bodyMultipart, boundary: "xyz"}},
		{"raw part of a batch", "width=1&height=1&channels=1&dtype=uint8&batch=3&batch_offset=5&batch_total=8", "application/octet-stream",
			request{format: frame.WEBP, quality: 80, kind: bodyRaw, shape: encode.Shape{Batch: 3, Height: 1, Width: 1, Channels: 1}, dtype: "uint8",
				batchOffset: 5, batchTotal: 8}},
		{"batch_total alone", "batch_total=4", "image/png", request{format: frame.WEBP, quality: 80, kind: bodyImage, declared: frame.PNG, batchTotal: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := parseRequest(tt.query, tt.ctype)
			if e != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, e, tt.want)
			}
		})
	}
	r, _ := parseRequest("width=3&height=2&channels=4&dtype=float32&batch=5", "application/octet-stream")
	if got, want := r.rawSize(), int64(5*2*3*4*4); got != want {
		t.Fatalf("rawSize got %d; want %d", got, want)
	}
}

// FuzzParseRequest checks that no query or Content-Type makes parsing
// panic, that every refusal is a documented 4xx with a message, and that
// every accepted raw shape is within the limits that bound allocation.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"width=2&height=2&channels=3&dtype=uint8", "application/octet-stream"},
		{"width=100000&height=100000&channels=3&dtype=float32&batch=4096", "application/octet-stream"},
		{"file_type=PNG&quality=100&client_id=a.b", "image/png"},
		{"quality=0", "image/jpeg"},
		{"%zz", "multipart/form-data; boundary=a"},
		{"client_id=%00", ""},
		{"batch=-1&width=1&height=1&channels=1&dtype=uint8", "application/octet-stream; charset=x"},
		{"batch=2&width=1&height=1&channels=1&dtype=uint8&batch_offset=7&batch_total=8", "application/octet-stream"},
		{"batch_offset=3", "image/webp"},
		{"previews=128", "image/png"},
		{"previews=15&file_type=jpeg", "multipart/form-data; boundary=b"},
		{"width=2&height=2&channels=3&dtype=uint8&previews=1024", "application/octet-stream"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, query, ctype string) {
		r, e := parseRequest(query, ctype)
		if e != nil {
			if e.status < 400 || e.status > 499 || e.code == "" || e.message == "" {
				t.Fatalf("error %+v; want a 4xx with code and message", e)
			}
			if e.status != http.StatusUnsupportedMediaType && !strings.Contains(e.message, "allowed") && !strings.Contains(e.message, "once") &&
				!strings.Contains(e.message, "required") && !strings.Contains(e.message, "boundary") {
				t.Fatalf("message %q does not say what is allowed", e.message)
			}
			return
		}
		if !r.format.Valid() || r.quality < 1 || r.quality > 100 {
			t.Fatalf("accepted format %v quality %d", r.format, r.quality)
		}
		if r.previews != 0 && (r.previews < publish.MinPreview || r.previews > publish.MaxPreview) {
			t.Fatalf("accepted previews %d", r.previews)
		}
		if r.kind == bodyRaw {
			s := r.shape
			if s.Width < 1 || s.Height < 1 || s.Width*s.Height > encode.MaxPixels || s.Batch < 1 || s.Batch > frame.MaxBatch {
				t.Fatalf("accepted shape %+v", s)
			}
			if r.rawSize() <= 0 {
				t.Fatalf("raw size %d for %+v", r.rawSize(), s)
			}
			if r.batchTotal > 0 && r.batchOffset+s.Batch > r.batchTotal {
				t.Fatalf("accepted %d frames at batch_offset %d of batch_total %d", s.Batch, r.batchOffset, r.batchTotal)
			}
		}
		if r.batchOffset < 0 || r.batchTotal < 0 || r.batchTotal > frame.MaxBatch || (r.batchTotal > 0 && r.batchOffset >= r.batchTotal) ||
			(r.batchTotal == 0 && r.batchOffset != 0) {
			t.Fatalf("accepted batch_offset %d, batch_total %d", r.batchOffset, r.batchTotal)
		}
	})
}
