package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// minFrameSize is the smallest frame makePNG builds.
const minFrameSize = 1024

// makePNG returns a valid PNG of exactly size bytes: random gray pixels,
// stored uncompressed, padded with a private ancillary chunk that decoders
// skip. The producer forwards it byte for byte.
func makePNG(size int) ([]byte, error) {
	const width = 256
	rng := rand.New(rand.NewPCG(uint64(size), 9))
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	for height := (size - 200) / (width + 1); height > 0; height-- {
		img := image.NewGray(image.Rect(0, 0, width, height))
		for i := range img.Pix {
			img.Pix[i] = uint8(rng.Uint32())
		}
		var buf bytes.Buffer
		if err := enc.Encode(&buf, img); err != nil {
			return nil, err
		}
		b := buf.Bytes()
		pad := size - len(b)
		if pad < 12 {
			continue
		}
		// Insert the chunk "fcPd" (ancillary, private, safe to copy)
		// before IEND, the last 12 bytes.
		iend := append([]byte(nil), b[len(b)-12:]...)
		out := append(b[:len(b)-12:len(b)-12], make([]byte, 0, pad+12)...)
		data := make([]byte, pad-12)
		out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
		typ := len(out)
		out = append(out, "fcPd"...)
		out = append(out, data...)
		out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[typ:]))
		out = append(out, iend...)
		return out, nil
	}
	return nil, fmt.Errorf("no PNG of %d bytes", size)
}

// publisher posts one PNG, again and again, to an output through the
// producer's HTTP API.
type publisher struct {
	url    string // .../v1/outputs/<output>/images
	client *http.Client
	body   []byte
}

func newPublisher(producerURL, output string, size int) (*publisher, error) {
	body, err := makePNG(size)
	if err != nil {
		return nil, err
	}
	return &publisher{
		url: producerURL + "/v1/outputs/" + url.PathEscape(output) + "/images",
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: maxPublishInFlight},
		},
		body: body,
	}, nil
}

// one publishes the frame once and returns its stream sequence.
func (p *publisher) one(ctx context.Context) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "image/png")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("publish: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var v struct {
		Frames []struct {
			Seq uint64 `json:"seq"`
		} `json:"frames"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if len(v.Frames) != 1 {
		return 0, fmt.Errorf("publish: %d frames in the answer; want 1", len(v.Frames))
	}
	return v.Frames[0].Seq, nil
}

// maxPublishInFlight bounds the publishes paced keeps in flight; a slower
// producer lowers the rate achieved, which paced reports.
const maxPublishInFlight = 8

// published sums up a paced run.
type published struct {
	Frames   int
	Errors   int
	LastSeq  uint64
	FirstErr error
	Elapsed  time.Duration
}

// paced publishes at rate frames per second for d, each publish in its
// own goroutine, and waits for the last answer.
func (p *publisher) paced(ctx context.Context, rate float64, d time.Duration) published {
	var (
		mu  sync.Mutex
		res published
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, maxPublishInFlight)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	start := time.Now()
loop:
	for n := 0; ; n++ {
		if n > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				break loop
			}
		}
		if time.Since(start) >= d {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			seq, err := p.one(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				if res.FirstErr == nil {
					res.FirstErr = err
				}
				return
			}
			res.Frames++
			res.LastSeq = max(res.LastSeq, seq)
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
