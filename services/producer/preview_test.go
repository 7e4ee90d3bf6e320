package producer

import (
	"context"
	"strings"
	"testing"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
)

// TestPreviews: previews=N publishes a WEBP preview of each image, of
// longest side N, just before the image, on the same subject; the answer
// lists both in that order.
func TestPreviews(t *testing.T) {
	e := newEnv(t, Config{})
	raw := make([]byte, 384*512*3)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	ctTwo, bodyTwo := multipartBody(t, []part{{"image/png", pngBytes(t, 300, 200)}, {"image/jpeg", jpegBytes(t, 40, 80)}})
	type want struct {
		rendition     string
		index         int
		ctype         string
		width, height int
	}
	tests := []struct {
		name  string
		query string
		ctype string
		body  []byte
		want  []want
	}{
		{"raw pixels", "width=512&height=384&channels=3&dtype=uint8&file_type=png&previews=128", "application/octet-stream", raw,
			[]want{{"preview", 0, "image/webp", 128, 96}, {"full", 0, "image/png", 512, 384}}},
		{"one encoded image", "previews=16", "image/png", pngBytes(t, 64, 32),
			[]want{{"preview", 0, "image/webp", 16, 8}, {"full", 0, "image/png", 64, 32}}},
		{"multipart, re-encoded", "previews=64&file_type=jpeg", ctTwo, bodyTwo,
			[]want{{"preview", 0, "image/webp", 64, 42}, {"full", 0, "image/jpeg", 300, 200}, {"preview", 1, "image/webp", 32, 64}, {"full", 1, "image/jpeg", 40, 80}}},
		{"without previews", "file_type=png", "image/png", pngBytes(t, 8, 8),
			[]want{{"full", 0, "image/png", 8, 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, "prev", tt.query, tt.ctype, tt.body, nil)
			if r.status != 200 {
				t.Fatalf("status %d %s; want 200", r.status, r.raw)
			}
			if len(r.ok.Frames) != len(tt.want) {
				t.Fatalf("answer lists %d frames %s; want %d", len(r.ok.Frames), r.raw, len(tt.want))
			}
			for i, w := range tt.want {
				f := r.ok.Frames[i]
				if f.Rendition != w.rendition || f.BatchIndex != w.index || f.ContentType != w.ctype || f.Width != w.width || f.Height != w.height {
					t.Errorf("frame %d: %+v; want %+v", i, f, w)
				}
				if i > 0 && f.Seq != r.ok.Frames[i-1].Seq+1 {
					t.Errorf("frame %d: seq %d; want %d, right after the one before", i, f.Seq, r.ok.Frames[i-1].Seq+1)
				}
				msg, err := e.st.GetMsg(context.Background(), f.Seq)
				if err != nil {
					t.Fatal(err)
				}
				m, err := frame.Decode(msg.Header)
				if err != nil || m.Rendition.String() != w.rendition || m.BatchIndex != w.index || msg.Subject != m.Subject() {
					t.Errorf("stored frame %d: %+v on %s (%v); want rendition %s, batch index %d", i, m, msg.Subject, err, w.rendition, w.index)
				}
				in, err := encode.Probe(msg.Data)
				if err != nil || in.Width != w.width || in.Height != w.height || in.Format.ContentType() != w.ctype {
					t.Errorf("stored image %d: %+v (%v); want %dx%d %s", i, in, err, w.width, w.height, w.ctype)
				}
			}
		})
	}
}

func TestPreviewsRefused(t *testing.T) {
	e := newEnv(t, Config{})
	for _, v := range []string{"15", "1025", "0", "big", "64&previews=64"} {
		t.Run(v, func(t *testing.T) {
			r := e.post(t, "prev", "previews="+v, "image/png", pngBytes(t, 8, 8), nil)
			want := CodeInvalidPreviews
			if strings.Contains(v, "&") {
				want = CodeInvalidQuery
			}
			if r.status != 400 || r.err.Error.Code != want || (want == CodeInvalidPreviews && !strings.Contains(r.err.Error.Message, "allowed: an integer 16..1024")) {
				t.Fatalf("got %d %s; want 400 %s saying what is allowed", r.status, r.raw, want)
			}
		})
	}
	if n := e.count(t); n != 0 {
		t.Fatalf("stream holds %d messages; want none", n)
	}
}
