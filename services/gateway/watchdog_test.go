package gateway

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/wire"
)

// TestWriteWatchdog: a write that makes no progress for the write timeout
// is cut; a slow client that keeps taking bytes receives a frame that
// takes it several write timeouts, whole.
func TestWriteWatchdog(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, func(c *Config) { c.WriteTimeout = time.Second })
	p := newPublisher(t, ns)

	stalled := smallWindowDial(t, hs.URL, "/v1/ws?output_id=stall")
	readControl(t, stalled, wire.TypeHello)
	slow := smallWindowDial(t, hs.URL, "/v1/ws?output_id=slow")
	readControl(t, slow, wire.TypeHello)

	big := bytes.Repeat([]byte{9}, 6<<20) // far more than the socket buffers hold
	p.publish("stall", "", big)
	start := time.Now()
	for srv.Connections() != 1 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("connections: got %d; want 1 (the stalled client cut)", srv.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("stalled client cut after %v; want after the 1s write timeout", d)
	}

	// 2 MiB at about 400 KiB/s: some 5 write timeouts.
	img := bytes.Repeat([]byte{7}, 2<<20)
	seq := p.publish("slow", "", img)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, r, err := slow.Reader(ctx)
	if err != nil {
		t.Fatalf("slow client: %v", err)
	}
	var got bytes.Buffer
	buf := make([]byte, 4<<10)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("slow client after %d bytes: %v", got.Len(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, b, err := wire.DecodeNative(got.Bytes())
	if err != nil || h.Seq != seq || !bytes.Equal(b, img) {
		t.Fatalf("slow client: got seq %d, %d image bytes, %v; want seq %d with %d bytes", h.Seq, len(b), err, seq, len(img))
	}
}
