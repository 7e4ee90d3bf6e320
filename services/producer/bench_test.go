package producer

import (
	"bytes"
	"net/http"
	"testing"
)

// BenchmarkPublishRaw posts one 512x512 RGB uint8 image per request over
// real HTTP to an embedded NATS server, for each format.
func BenchmarkPublishRaw(b *testing.B) {
	for _, ft := range []string{"png", "jpeg", "webp"} {
		b.Run(ft, func(b *testing.B) {
			e := newEnv(b, Config{})
			body := make([]byte, 512*512*3)
			for i := range body {
				body[i] = byte(i * 7)
			}
			u := e.http.URL + "/v1/outputs/bench/images?width=512&height=512&channels=3&dtype=uint8&file_type=" + ft
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				resp, err := http.Post(u, "application/octet-stream", bytes.NewReader(body))
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("POST: %v %v", resp, err)
				}
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkPublishEncodedPreviews posts a multipart batch of four
// 1024x1024 PNG images, forwarded as they are, with previews=256 and, as
// the baseline in the same run, without previews.
func BenchmarkPublishEncodedPreviews(b *testing.B) {
	img := pngBytes(b, 1024, 1024)
	ct, body := multipartBody(b, []part{{"image/png", img}, {"image/png", img}, {"image/png", img}, {"image/png", img}})
	for _, q := range []string{"none", "previews=256"} {
		b.Run(q, func(b *testing.B) {
			e := newEnv(b, Config{})
			u := e.http.URL + "/v1/outputs/bench/images"
			if q != "none" {
				u += "?" + q
			}
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				resp, err := http.Post(u, ct, bytes.NewReader(body))
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("POST: %v %v", resp, err)
				}
				resp.Body.Close()
			}
		})
	}
}
