package producer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/subject"
)

// checkFrames reads every frame of r back from the stream and checks its
// subject, headers and image against the response.
func (e *env) checkFrames(t *testing.T, r result, oid, cid string, n int, f frame.Format, w, h int) [][]byte {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d body %s; want 200", r.status, r.raw)
	}
	if r.ok.OutputID != oid || r.ok.ClientID != cid {
		t.Fatalf("response ids %q, %q; want %q, %q", r.ok.OutputID, r.ok.ClientID, oid, cid)
	}
	if len(r.ok.Frames) != n {
		t.Fatalf("got %d frames; want %d", len(r.ok.Frames), n)
	}
	var out [][]byte
	for i, fr := range r.ok.Frames {
		msg, err := e.st.GetMsg(context.Background(), fr.Seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", fr.Seq, err)
		}
		if want := subject.Frames(oid, cid); msg.Subject != want {
			t.Fatalf("frame %d subject %q; want %q", i, msg.Subject, want)
		}
		m, err := frame.Decode(msg.Header)
		if err != nil {
			t.Fatalf("frame %d headers: %v", i, err)
		}
		if m.OutputID != oid || m.ClientID != cid || m.BatchIndex != i || m.BatchSize != n || m.Format != f || m.Width != w || m.Height != h || m.Timestamp == 0 {
			t.Fatalf("frame %d meta %+v; want %s/%q %s %dx%d index %d of %d", i, m, oid, cid, f, w, h, i, n)
		}
		if fr.BatchIndex != i || fr.ContentType != f.ContentType() || fr.Width != w || fr.Height != h || fr.Bytes != len(msg.Data) {
			t.Fatalf("response frame %d = %+v; want index %d %s %dx%d %d bytes", i, fr, i, f.ContentType(), w, h, len(msg.Data))
		}
		in, err := encode.Probe(msg.Data)
		if err != nil || in.Format != f || in.Width != w || in.Height != h {
			t.Fatalf("frame %d image: %+v, %v; want %s %dx%d", i, in, err, f, w, h)
		}
		if i > 0 && fr.Seq <= r.ok.Frames[i-1].Seq {
			t.Fatalf("frame %d seq %d not after %d", i, fr.Seq, r.ok.Frames[i-1].Seq)
		}
		out = append(out, msg.Data)
	}
	return out
}

func float32Body(vals []float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestRawPixels(t *testing.T) {
	e := newEnv(t, Config{})
	const w, h = 6, 4
	u8 := func(c, batch int) []byte {
		b := make([]byte, batch*h*w*c)
		for i := range b {
			b[i] = byte(i * 3)
		}
		return b
	}
	f32 := make([]float32, 3*h*w*3)
	for i := range f32 {
		f32[i] = float32(i%11) / 10
	}
	tests := []struct {
		name   string
		query  string
		body   []byte
		n      int
		format frame.Format
	}{
		{"uint8 rgb default webp", "width=6&height=4&channels=3&dtype=uint8", u8(3, 1), 1, frame.WEBP},
		{"uint8 gray jpeg", "width=6&height=4&channels=1&dtype=uint8&file_type=JPEG&quality=90", u8(1, 1), 1, frame.JPEG},
		{"uint8 rgba png batch 2", "width=6&height=4&channels=4&dtype=UINT8&file_type=png&batch=2&client_id=c1", u8(4, 2), 2, frame.PNG},
		{"float32 rgb png batch 3", "width=6&height=4&channels=3&dtype=float32&file_type=Png&batch=3", float32Body(f32), 3, frame.PNG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, "out1", tt.query, "application/octet-stream", tt.body, nil)
			cid := ""
			if strings.Contains(tt.query, "client_id=c1") {
				cid = "c1"
			}
			e.checkFrames(t, r, "out1", cid, tt.n, tt.format, w, h)
		})
	}

	t.Run("float32 converts as the seed", func(t *testing.T) {
		vals := []float32{0, 0.5, 1, 0.999, -1, 2, float32(math.NaN()), 0.25, 0.1, 1, 1, 1}
		r := e.post(t, "out1", "width=2&height=2&channels=3&dtype=float32&file_type=png", "application/octet-stream", float32Body(vals), nil)
		data := e.checkFrames(t, r, "out1", "", 1, frame.PNG, 2, 2)
		m, _, err := image.Decode(bytes.NewReader(data[0]))
		if err != nil {
			t.Fatal(err)
		}
		want := []uint8{0, 127, 255, 254, 0, 255, 0, 63, 25, 255, 255, 255}
		for i := 0; i < 4; i++ {
			r, g, b, _ := m.At(i%2, i/2).RGBA()
			got := []uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
			if !bytes.Equal(got, want[3*i:3*i+3]) {
				t.Fatalf("pixel %d = %v; want %v", i, got, want[3*i:3*i+3])
			}
		}
	})
}

func TestEncodedImage(t *testing.T) {
	e := newEnv(t, Config{})
	p := pngBytes(t, 5, 3)
	t.Run("forwarded as is", func(t *testing.T) {
		r := e.post(t, "enc", "client_id=viewer", "image/png", p, nil)
		data := e.checkFrames(t, r, "enc", "viewer", 1, frame.PNG, 5, 3)
		if !bytes.Equal(data[0], p) {
			t.Fatalf("stored %d bytes; want the %d bytes sent", len(data[0]), len(p))
		}
	})
	t.Run("same file_type forwarded", func(t *testing.T) {
		r := e.post(t, "enc", "file_type=png&quality=5", "image/png", p, nil)
		if data := e.checkFrames(t, r, "enc", "", 1, frame.PNG, 5, 3); !bytes.Equal(data[0], p) {
			t.Fatal("PNG with file_type=png was re-encoded; want forwarded")
		}
	})
	t.Run("other file_type re-encoded", func(t *testing.T) {
		r := e.post(t, "enc", "file_type=jpeg&quality=70", "image/png", p, nil)
		e.checkFrames(t, r, "enc", "", 1, frame.JPEG, 5, 3)
	})
	t.Run("jpeg", func(t *testing.T) {
		r := e.post(t, "enc", "", "image/jpeg", jpegBytes(t, 9, 7), nil)
		e.checkFrames(t, r, "enc", "", 1, frame.JPEG, 9, 7)
	})
}

// multipartBody builds a multipart/form-data body with one part per image;
// a part's type "" leaves its Content-Type out.
func multipartBody(t testing.TB, parts []struct {
	ctype string
	data  []byte
}) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="image"; filename="%d"`, i))
		if p.ctype != "" {
			h.Set("Content-Type", p.ctype)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

type part = struct {
	ctype string
	data  []byte
}

func TestMultipart(t *testing.T) {
	e := newEnv(t, Config{})
	a, b, c := pngBytes(t, 4, 4), pngBytes(t, 4, 4), jpegBytes(t, 4, 4)
	ct, body := multipartBody(t, []part{{"image/png", a}, {"", b}, {"application/octet-stream", c}})
	r := e.post(t, "multi", "file_type=png", ct, body, nil)
	data := e.checkFrames(t, r, "multi", "", 3, frame.PNG, 4, 4)
	if !bytes.Equal(data[0], a) || !bytes.Equal(data[1], b) {
		t.Fatal("PNG parts were not forwarded in order")
	}
}

// TestMultipartReencodedInOrder sends more parts than GOMAXPROCS, which
// reencode handles a chunk at a time; every frame must come back in the
// requested format, in order.
func TestMultipartReencodedInOrder(t *testing.T) {
	e := newEnv(t, Config{})
	var parts []part
	for i := range 5 {
		parts = append(parts, part{"image/png", pngBytes(t, 3+i, 2)})
	}
	parts = append(parts, part{"image/jpeg", jpegBytes(t, 9, 2)})
	ct, body := multipartBody(t, parts)
	r := e.post(t, "multi", "file_type=webp&quality=90", ct, body, nil)
	if r.status != http.StatusOK || len(r.ok.Frames) != len(parts) {
		t.Fatalf("got %d with %d frames; want 200 with %d", r.status, len(r.ok.Frames), len(parts))
	}
	for i, f := range r.ok.Frames {
		wantW := 3 + i
		if i == 5 {
			wantW = 9
		}
		if f.ContentType != "image/webp" || f.Width != wantW || f.BatchIndex != i {
			t.Fatalf("frame %d: %s %dx%d index %d; want image/webp %dx2 index %d", i, f.ContentType, f.Width, f.Height, f.BatchIndex, wantW, i)
		}
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, Config{})
	body := make([]byte, 3*2*2*3)
	q := "width=2&height=2&channels=3&dtype=uint8&batch=3&file_type=png"
	hdr := map[string]string{"Idempotency-Key": "job-42 retry-safe"}
	before := e.count(t)
	first := e.post(t, "idem", q, "application/octet-stream", body, hdr)
	e.checkFrames(t, first, "idem", "", 3, frame.PNG, 2, 2)
	second := e.post(t, "idem", q, "application/octet-stream", body, hdr)
	e.checkFrames(t, second, "idem", "", 3, frame.PNG, 2, 2)
	if got := e.count(t) - before; got != 3 {
		t.Fatalf("stream gained %d messages; want 3", got)
	}
	for i := range first.ok.Frames {
		f, s := first.ok.Frames[i], second.ok.Frames[i]
		if f.Seq != s.Seq || f.Duplicate || !s.Duplicate {
			t.Fatalf("frame %d: first seq %d dup %v, retry seq %d dup %v; want equal seqs, retry duplicate", i, f.Seq, f.Duplicate, s.Seq, s.Duplicate)
		}
	}
	other := e.post(t, "idem", q, "application/octet-stream", body, map[string]string{"Idempotency-Key": "job-43"})
	e.checkFrames(t, other, "idem", "", 3, frame.PNG, 2, 2)
	if got := e.count(t) - before; got != 6 {
		t.Fatalf("stream gained %d messages after a new key; want 6", got)
	}
}

// TestIdempotencyKeyScopedToOutput: the same Idempotency-Key on output A,
// then on output B, stores both frames, each under its own output; only a
// retry on A answers A's seq as a duplicate.
func TestIdempotencyKeyScopedToOutput(t *testing.T) {
	e := newEnv(t, Config{})
	p := pngBytes(t, 4, 4)
	hdr := map[string]string{"Idempotency-Key": "K"}
	before := e.count(t)
	a := e.post(t, "out-a", "", "image/png", p, hdr)
	e.checkFrames(t, a, "out-a", "", 1, frame.PNG, 4, 4)
	b := e.post(t, "out-b", "", "image/png", p, hdr)
	e.checkFrames(t, b, "out-b", "", 1, frame.PNG, 4, 4)
	if b.ok.Frames[0].Duplicate || b.ok.Frames[0].Seq == a.ok.Frames[0].Seq {
		t.Fatalf("output B answered %s; want a new frame, not output A's seq %d", b.raw, a.ok.Frames[0].Seq)
	}
	msg, err := e.st.GetMsg(context.Background(), b.ok.Frames[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Subject, subject.Frames("out-b", ""); got != want {
		t.Fatalf("output B's frame is on %q; want %q", got, want)
	}
	retry := e.post(t, "out-a", "", "image/png", p, hdr)
	if retry.status != http.StatusOK || retry.ok.Frames[0].Seq != a.ok.Frames[0].Seq || !retry.ok.Frames[0].Duplicate {
		t.Fatalf("retry on A: %d %s; want 200, a duplicate of seq %d", retry.status, retry.raw, a.ok.Frames[0].Seq)
	}
	if got := e.count(t) - before; got != 2 {
		t.Fatalf("stream gained %d messages; want 2", got)
	}
}

// TestBatchInSeveralRequests sends a batch of 8 as requests of 5, 2 and 1
// frames (raw pixels, multipart, one image), each placed with batch_offset
// and batch_total: the stream holds one batch of 8, indices 0..7, and the
// answers give each frame's index in the whole batch.
func TestBatchInSeveralRequests(t *testing.T) {
	e := newEnv(t, Config{})
	p := pngBytes(t, 2, 2)
	ct, multi := multipartBody(t, []part{{"image/png", p}, {"image/png", p}})
	requests := []struct {
		query, ctype string
		body         []byte
	}{
		{"width=2&height=2&channels=3&dtype=uint8&batch=5&file_type=png&batch_offset=0&batch_total=8", "application/octet-stream", make([]byte, 5*2*2*3)},
		{"batch_offset=5&batch_total=8", ct, multi},
		{"batch_offset=7&batch_total=8", "image/png", p},
	}
	var frames []ResponseFrame
	for i, rq := range requests {
		hdr := map[string]string{"Idempotency-Key": fmt.Sprintf("job-7/%d", i)}
		r := e.post(t, "split", rq.query, rq.ctype, rq.body, hdr)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d body %s; want 200", i, r.status, r.raw)
		}
		frames = append(frames, r.ok.Frames...)
	}
	if len(frames) != 8 {
		t.Fatalf("got %d frames; want 8", len(frames))
	}
	for i, fr := range frames {
		msg, err := e.st.GetMsg(context.Background(), fr.Seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", fr.Seq, err)
		}
		m, err := frame.Decode(msg.Header)
		if err != nil {
			t.Fatalf("frame %d headers: %v", i, err)
		}
		if fr.BatchIndex != i || m.BatchIndex != i || m.BatchSize != 8 {
			t.Fatalf("frame %d: answer index %d, stream index %d of %d; want %d of 8", i, fr.BatchIndex, m.BatchIndex, m.BatchSize, i)
		}
	}
	// A retry of the middle request stores nothing again.
	before := e.count(t)
	r := e.post(t, "split", requests[1].query, requests[1].ctype, requests[1].body, map[string]string{"Idempotency-Key": "job-7/1"})
	if r.status != http.StatusOK || len(r.ok.Frames) != 2 || !r.ok.Frames[0].Duplicate || r.ok.Frames[0].Seq != frames[5].Seq || r.ok.Frames[1].BatchIndex != 6 {
		t.Fatalf("retry: %d %s; want 200 with frames 5 and 6 as duplicates at their first seqs", r.status, r.raw)
	}
	if got := e.count(t); got != before {
		t.Fatalf("stream has %d messages after the retry; want %d", got, before)
	}
}

func TestIDsEscapedIntoSubject(t *testing.T) {
	e := newEnv(t, Config{})
	p := pngBytes(t, 2, 2)
	for _, id := range []string{"a.b", "*", ">", "a b", "100%", "a/b", ".", "..", "~all", "x.*.>"} {
		t.Run(id, func(t *testing.T) {
			r := e.post(t, escapeAll(id), "client_id="+escapeAll(id), "image/png", p, nil)
			e.checkFrames(t, r, id, id, 1, frame.PNG, 2, 2)
		})
	}
	t.Run("mux-style escapes", func(t *testing.T) {
		// a%2Fb is one segment "a/b"; a literal ./ is kept, not cleaned away.
		r := e.post(t, "a%2Fb", "", "image/png", p, nil)
		e.checkFrames(t, r, "a/b", "", 1, frame.PNG, 2, 2)
		r = e.post(t, ".", "", "image/png", p, nil)
		e.checkFrames(t, r, ".", "", 1, frame.PNG, 2, 2)
	})
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 1 << 20})
	p := pngBytes(t, 8, 8)
	raw := "width=2&height=2&channels=3&dtype=uint8"
	ctMixed, bodyMixed := multipartBody(t, []part{{"image/png", p}, {"", []byte("just a note")}})
	ctText, bodyText := multipartBody(t, []part{{"image/png", p}, {"text/plain", p}})
	ctEmpty, bodyEmpty := multipartBody(t, nil)
	ctTwo, bodyTwo := multipartBody(t, []part{{"image/png", p}, {"image/png", p}})
	const ev, js = eventsPath, "application/json"
	event := []byte(`{"event":"progress","data":{"value":1,"max":2}}`)
	bigEvent := []byte(`{"event":"s","data":{"x":"` + strings.Repeat("x", 64<<10) + `"}}`)
	tests := []struct {
		name    string
		seg     string
		query   string
		ctype   string
		body    []byte
		hdr     map[string]string
		status  int
		code    string
		message string // a part of the message saying what is allowed
	}{
		{"empty output_id", "", "", "image/png", p, nil, 400, CodeInvalidOutputID, "1..24 bytes of printable ASCII"},
		{"25-byte output_id", strings.Repeat("a", 25), "", "image/png", p, nil, 400, CodeInvalidOutputID, "greater than 24 bytes"},
		{"non-ASCII output_id", "caf%C3%A9", "", "image/png", p, nil, 400, CodeInvalidOutputID, "not ASCII encodable"},
		{"control output_id", "a%0Ab", "", "image/png", p, nil, 400, CodeInvalidOutputID, "printable ASCII 0x20-0x7E"},
		{"NUL output_id", "%00", "", "image/png", p, nil, 400, CodeInvalidOutputID, "printable ASCII"},
		{"long client_id", "o", "client_id=" + strings.Repeat("c", 129), "image/png", p, nil, 400, CodeInvalidClientID, "128 bytes"},
		{"control client_id", "o", "client_id=a%09b", "image/png", p, nil, 400, CodeInvalidClientID, "printable ASCII"},
		{"non-ASCII client_id", "o", "client_id=%FF", "image/png", p, nil, 400, CodeInvalidClientID, "not ASCII encodable"},
		{"quality 0", "o", "quality=0", "image/png", p, nil, 400, CodeInvalidQuality, "1..100"},
		{"quality 101", "o", "quality=101", "image/png", p, nil, 400, CodeInvalidQuality, "1..100"},
		{"quality abc", "o", "quality=abc", "image/png", p, nil, 400, CodeInvalidQuality, "1..100"},
		{"unknown file_type", "o", "file_type=gif", "image/png", p, nil, 400, CodeInvalidFileType, "webp, png, jpeg"},
		{"unknown parameter", "o", "qualty=5", "image/png", p, nil, 400, CodeInvalidQuery, "allowed: client_id"},
		{"repeated parameter", "o", "quality=5&quality=6", "image/png", p, nil, 400, CodeInvalidQuery, "once"},
		{"shape on an image body", "o", "width=8", "image/png", p, nil, 400, CodeInvalidQuery, "only to application/octet-stream"},
		{"batch_offset without batch_total", "o", "batch_offset=2", "image/png", p, nil, 400, CodeInvalidBatch, "batch_offset needs batch_total"},
		{"batch_total 0", "o", "batch_total=0", "image/png", p, nil, 400, CodeInvalidBatch, "allowed: an integer 1..4096"},
		{"batch_total over 4096", "o", "batch_total=4097", "image/png", p, nil, 400, CodeInvalidBatch, "allowed: an integer 1..4096"},
		{"batch_total not a number", "o", "batch_total=eight", "image/png", p, nil, 400, CodeInvalidBatch, "allowed: an integer 1..4096"},
		{"batch_offset at batch_total", "o", "batch_offset=8&batch_total=8", "image/png", p, nil, 400, CodeInvalidBatch, "allowed: an integer 0..7 (below batch_total 8)"},
		{"negative batch_offset", "o", "batch_offset=-1&batch_total=8", "image/png", p, nil, 400, CodeInvalidBatch, "allowed: an integer 0..7"},
		{"raw part past batch_total", "o", raw + "&batch=3&batch_offset=6&batch_total=8", "application/octet-stream", make([]byte, 36), nil, 400, CodeInvalidBatch,
			"batch_offset 6 + 3 frames is 9, over batch_total 8"},
		{"multipart part past batch_total", "o", "batch_offset=3&batch_total=4", ctTwo, bodyTwo, nil, 400, CodeInvalidBatch, "batch_offset 3 + 2 frames is 5, over batch_total 4"},
		{"body length short", "o", raw, "application/octet-stream", make([]byte, 11), nil, 400, CodeInvalidBody, "expected 12"},
		{"body length long", "o", raw, "application/octet-stream", make([]byte, 13), nil, 400, CodeInvalidBody, "expected 12"},
		{"float32 length", "o", "width=2&height=2&channels=3&dtype=float32", "application/octet-stream", make([]byte, 12), nil, 400, CodeInvalidBody, "expected 48"},
		{"zero width", "o", "width=0&height=2&channels=3&dtype=uint8", "application/octet-stream", nil, nil, 400, CodeInvalidShape, "1..32768"},
		{"missing height", "o", "width=2&channels=3&dtype=uint8", "application/octet-stream", nil, nil, 400, CodeInvalidShape, "height is required"},
		{"absurd dimensions", "o", "width=100000&height=100000&channels=3&dtype=uint8", "application/octet-stream", make([]byte, 12), nil, 400, CodeInvalidShape, "1..32768"},
		{"too many pixels", "o", "width=32768&height=32768&channels=3&dtype=uint8&file_type=png", "application/octet-stream", make([]byte, 12), nil, 400, CodeInvalidShape, "at most 67108864 pixels"},
		{"over webp side", "o", "width=16384&height=1&channels=3&dtype=uint8", "application/octet-stream", make([]byte, 12), nil, 400, CodeInvalidShape, "file_type png or jpeg"},
		{"raw over body limit", "o", "width=1024&height=1024&channels=4&dtype=float32&file_type=png", "application/octet-stream", make([]byte, 12), nil, 413, CodeBodyTooLarge, "the limit is 1048576 bytes"},
		{"channels 2", "o", "width=2&height=2&channels=2&dtype=uint8", "application/octet-stream", make([]byte, 8), nil, 400, CodeInvalidShape, "1 (gray), 3 (RGB), 4 (RGBA)"},
		{"batch 0", "o", raw + "&batch=0", "application/octet-stream", nil, nil, 400, CodeInvalidShape, "1..4096"},
		{"unknown dtype", "o", "width=2&height=2&channels=3&dtype=float16", "application/octet-stream", make([]byte, 24), nil, 400, CodeInvalidDType, "uint8, float32"},
		{"missing dtype", "o", "width=2&height=2&channels=3", "application/octet-stream", make([]byte, 12), nil, 400, CodeInvalidDType, "uint8, float32"},
		{"truncated PNG", "o", "", "image/png", p[:len(p)-20], nil, 400, CodeInvalidImage, "PNG, JPEG or WEBP"},
		{"not an image", "o", "", "image/png", []byte("hello, world"), nil, 400, CodeInvalidImage, "PNG, JPEG or WEBP"},
		{"empty image body", "o", "", "image/webp", nil, nil, 400, CodeInvalidImage, "PNG, JPEG or WEBP"},
		{"type mismatch", "o", "", "image/jpeg", p, nil, 400, CodeInvalidImage, "matching Content-Type"},
		{"oversized body", "o", "", "image/png", make([]byte, 1<<20+1), nil, 413, CodeBodyTooLarge, "1048576"},
		{"missing content type", "o", "", "", p, nil, 415, CodeUnsupportedMediaType, "image/png"},
		{"text content type", "o", "", "text/plain", p, nil, 415, CodeUnsupportedMediaType, "multipart/form-data"},
		{"multipart non-image part", "o", "", ctMixed, bodyMixed, nil, 400, CodeInvalidImage, "part 1"},
		{"multipart text part type", "o", "", ctText, bodyText, nil, 400, CodeInvalidImage, "allowed: image/png"},
		{"multipart no parts", "o", "", ctEmpty, bodyEmpty, nil, 400, CodeInvalidBody, "1..4096"},
		{"multipart no boundary", "o", "", "multipart/form-data", bodyMixed, nil, 400, CodeInvalidBody, "boundary"},
		{"long idempotency key", "o", "", "image/png", p, map[string]string{"Idempotency-Key": strings.Repeat("k", 129)}, 400, CodeInvalidIdempotency, "1..128 bytes of printable ASCII"},
		{"non-ASCII idempotency key", "o", "", "image/png", p, map[string]string{"Idempotency-Key": "k\xc3\xa9"}, 400, CodeInvalidIdempotency, "printable ASCII"},

		// POST /v1/events
		{"event: long client_id", ev, "client_id=" + strings.Repeat("c", 129), js, event, nil, 400, CodeInvalidClientID, "128 bytes"},
		{"event: control client_id", ev, "client_id=a%00", js, event, nil, 400, CodeInvalidClientID, "printable ASCII"},
		{"event: unknown parameter", ev, "output_id=o", js, event, nil, 400, CodeInvalidQuery, "allowed: client_id"},
		{"event: repeated client_id", ev, "client_id=a&client_id=b", js, event, nil, 400, CodeInvalidQuery, "once"},
		{"event: bad query encoding", ev, "client_id=%zz", js, event, nil, 400, CodeInvalidQuery, "allowed parameters: client_id"},
		{"event: missing content type", ev, "", "", event, nil, 415, CodeUnsupportedMediaType, "allowed: application/json"},
		{"event: text content type", ev, "", "text/plain", event, nil, 415, CodeUnsupportedMediaType, "allowed: application/json"},
		{"event: other charset", ev, "", "application/json; charset=latin1", event, nil, 415, CodeUnsupportedMediaType, "charset=utf-8"},
		{"event: unparsable content type", ev, "", "application/json; =", event, nil, 415, CodeUnsupportedMediaType, "does not parse"},
		{"event: long idempotency key", ev, "", js, event, map[string]string{"Idempotency-Key": strings.Repeat("k", 129)}, 400, CodeInvalidIdempotency, "1..128 bytes"},
		{"event: over 64 KiB", ev, "", js, bigEvent, nil, 413, CodeBodyTooLarge, "the limit is 65536 bytes"},
		{"event: empty body", ev, "", js, nil, nil, 400, CodeInvalidEvent, "the event is empty"},
		{"event: not JSON", ev, "", js, []byte("event=status"), nil, 400, CodeInvalidEvent, "not valid JSON"},
		{"event: truncated JSON", ev, "", js, event[:len(event)-1], nil, 400, CodeInvalidEvent, "unexpected end of JSON input"},
		{"event: two JSON values", ev, "", js, append(event, event...), nil, 400, CodeInvalidEvent, "not valid JSON"},
		{"event: invalid UTF-8", ev, "", js, []byte("{\"event\":\"s\",\"data\":{\"x\":\"\xff\"}}"), nil, 400, CodeInvalidEvent, "not valid UTF-8"},
		{"event: an array", ev, "", js, []byte(`[]`), nil, 400, CodeInvalidEvent, "the event is a JSON array"},
		{"event: ComfyUI's type member", ev, "", js, []byte(`{"type":"status","data":{}}`), nil, 400, CodeInvalidEvent, `unknown member "type"`},
		{"event: extra member", ev, "", js, []byte(`{"event":"s","data":{},"sid":"x"}`), nil, 400, CodeInvalidEvent, `unknown member "sid"`},
		{"event: missing data", ev, "", js, []byte(`{"event":"s"}`), nil, 400, CodeInvalidEvent, `member "data" is missing`},
		{"event: missing event", ev, "", js, []byte(`{"data":{}}`), nil, 400, CodeInvalidEvent, `member "event" is missing`},
		{"event: event twice", ev, "", js, []byte(`{"event":"s","data":{},"event":"t"}`), nil, 400, CodeInvalidEvent, "given twice"},
		{"event: name not a string", ev, "", js, []byte(`{"event":7,"data":{}}`), nil, 400, CodeInvalidEvent, `"event" is a JSON number`},
		{"event: empty name", ev, "", js, []byte(`{"event":"","data":{}}`), nil, 400, CodeInvalidEvent, `"event" is empty`},
		{"event: 65-byte name", ev, "", js, []byte(`{"event":"` + strings.Repeat("n", 65) + `","data":{}}`), nil, 400, CodeInvalidEvent, "1..64 bytes of printable ASCII"},
		{"event: control in name", ev, "", js, []byte(`{"event":"a\n","data":{}}`), nil, 400, CodeInvalidEvent, "byte 0x0A at offset 1"},
		{"event: non-ASCII name", ev, "", js, []byte(`{"event":"\u00e9","data":{}}`), nil, 400, CodeInvalidEvent, "printable ASCII"},
		{"event: name ends with a space", ev, "", js, []byte(`{"event":"s ","data":{}}`), nil, 400, CodeInvalidEvent, "starts or ends with a space"},
		{"event: data an array", ev, "", js, []byte(`{"event":"s","data":[]}`), nil, 400, CodeInvalidEvent, "allowed: a JSON object"},
		{"event: data null", ev, "", js, []byte(`{"event":"s","data":null}`), nil, 400, CodeInvalidEvent, "allowed: a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.count(t)
			r := e.post(t, tt.seg, tt.query, tt.ctype, tt.body, tt.hdr)
			if r.status != tt.status || r.err.Error.Code != tt.code {
				t.Fatalf("got %d %s (%s); want %d %s", r.status, r.err.Error.Code, r.err.Error.Message, tt.status, tt.code)
			}
			if !strings.Contains(r.err.Error.Message, tt.message) {
				t.Fatalf("message %q; want it to contain %q", r.err.Error.Message, tt.message)
			}
			if got := e.count(t); got != before {
				t.Fatalf("stream has %d messages; want %d (nothing published)", got, before)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/outputs/o/images", 405, CodeMethodNotAllowed},
		{"GET", "/v1/events", 405, CodeMethodNotAllowed},
		{"POST", "/v1/events/", 404, CodeNotFound},
		{"POST", "/v1/events/x", 404, CodeNotFound},
		{"POST", "/v1/outputs/o/other", 404, CodeNotFound},
		{"POST", "/v1/outputs/a/b/images", 404, CodeNotFound},
		{"GET", "/nope", 404, CodeNotFound},
		{"GET", "/healthz", 200, ""},
		{"GET", "/readyz", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.http.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b ErrorResponse
			decodeJSON(t, resp, &b)
			if resp.StatusCode != tt.status || b.Error.Code != tt.code {
				t.Fatalf("got %d %q; want %d %q", resp.StatusCode, b.Error.Code, tt.status, tt.code)
			}
			if tt.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Fatalf("Allow %q; want POST", resp.Header.Get("Allow"))
			}
		})
	}
	// One publish, then the metrics show it.
	e.checkFrames(t, e.post(t, "m", "", "image/png", pngBytes(t, 2, 2), nil), "m", "", 1, frame.PNG, 2, 2)
	metrics := e.metrics(t)
	for _, want := range []string{`framecast_producer_requests_total{code="200"}`, `framecast_producer_frames_total{format="png"} 1`,
		"framecast_producer_bytes_total", "framecast_producer_encode_seconds", "framecast_producer_publish_seconds_count 1",
		`framecast_producer_errors_total{code="method_not_allowed"} 2`, "framecast_producer_ready 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Config{Tokens: []string{"first", "second-token"}})
	p := pngBytes(t, 2, 2)
	tests := []struct {
		name   string
		auth   string
		status int
		code   string
	}{
		{"missing", "", 401, CodeUnauthorized},
		{"not bearer", "Basic Zm9vOmJhcg==", 401, CodeUnauthorized},
		{"wrong", "Bearer nope", 403, CodeForbidden},
		{"prefix of a token", "Bearer secon", 403, CodeForbidden},
		{"first", "Bearer first", 200, ""},
		{"second, any case scheme", "bearer second-token", 200, ""},
	}
	// The same auth guards images and events.
	requests := []struct {
		seg, ctype string
		body       []byte
	}{
		{"auth", "image/png", p},
		{eventsPath, "application/json", []byte(`{"event":"status","data":{}}`)},
	}
	for _, tt := range tests {
		for _, rq := range requests {
			t.Run(tt.name+" "+rq.ctype, func(t *testing.T) {
				hdr := map[string]string{}
				if tt.auth != "" {
					hdr["Authorization"] = tt.auth
				}
				before := e.count(t)
				r := e.post(t, rq.seg, "", rq.ctype, rq.body, hdr)
				if r.status != tt.status || r.err.Error.Code != tt.code {
					t.Fatalf("got %d %q; want %d %q", r.status, r.err.Error.Code, tt.status, tt.code)
				}
				if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
				if want := before + map[bool]uint64{true: 1}[tt.status == 200]; e.count(t) != want {
					t.Fatalf("stream has %d messages; want %d", e.count(t), want)
				}
			})
		}
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative body", Config{MaxBodyBytes: -1}},
		{"bad url", Config{NATSURL: "::nope"}},
		{"empty token", Config{Tokens: []string{""}}},
		{"token with space", Config{Tokens: []string{"a b"}}},
		{"negative max frame", Config{MaxFrameBytes: -1}},
		{"bad bucket name", Config{Stream: stream.Config{Bucket: "a.b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(context.Background(), tt.cfg); !errorsIs(err, ErrInvalidConfig) {
				t.Fatalf("got %v; want ErrInvalidConfig", err)
			}
		})
	}
}

// TestChunkedBodyOverLimit sends bodies without Content-Length, so the
// limit is found only while reading: the 413 must still name the limit.
func TestChunkedBodyOverLimit(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 1 << 20})
	big := append(pngBytes(t, 8, 8), make([]byte, 1<<20)...)
	ct, multi := multipartBody(t, []part{{"image/png", big}})
	tests := []struct {
		name  string
		path  string
		ctype string
		body  []byte
		limit string
	}{
		{"image", "/v1/outputs/o/images", "image/png", big, "1048576 bytes"},
		{"multipart", "/v1/outputs/o/images", ct, multi, "1048576 bytes"},
		{"event", eventsPath, "application/json", []byte(`{"event":"s","data":{"x":"` + strings.Repeat("x", 64<<10) + `"}}`), "65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, e.http.URL+tt.path, io.MultiReader(bytes.NewReader(tt.body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b ErrorResponse
			decodeJSON(t, resp, &b)
			if resp.StatusCode != 413 || b.Error.Code != CodeBodyTooLarge || !strings.Contains(b.Error.Message, tt.limit) {
				t.Fatalf("got %d %s %q; want 413 %s naming the limit of %s", resp.StatusCode, b.Error.Code, b.Error.Message, CodeBodyTooLarge, tt.limit)
			}
		})
	}
}
