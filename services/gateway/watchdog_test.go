package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// TestWriteWatchdog: a write that makes no progress for the write timeout
// is stopped, and cut when the client still takes nothing (it never reads
// again); a slow client that keeps taking bytes receives a frame that
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

// TestStalledClientGets4008: a client that takes no bytes for the write
// timeout is closed with 4008 and the sequence to resume from, once it
// takes the message being written; the frame it was sent arrives whole
// first, and resuming from the close's since loses nothing.
func TestStalledClientGets4008(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, func(c *Config) { c.WriteTimeout = 2 * time.Second })
	p := newPublisher(t, ns)

	c := smallWindowDial(t, hs.URL, "/v1/ws?output_id=stall")
	readControl(t, c, wire.TypeHello)
	big := bytes.Repeat([]byte{9}, 6<<20) // far more than the socket buffers hold
	seq := p.publish("stall", "", big)
	waitFor(t, "write stall found", func() bool {
		return metricValue(t, hs.URL, "framecast_gateway_write_stalls_total") == 1
	})
	after := p.publish("stall", "", img(2)) // not sent: the connection closes first

	if h := readFrames(t, c, 1)[0]; h.Seq != seq {
		t.Fatalf("stalled frame: got seq %d; want %d", h.Seq, seq)
	}
	_, err := tryRead(c)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != wire.CloseSlowClient {
		t.Fatalf("after the frame: got %v; want close %d", err, wire.CloseSlowClient)
	}
	want := fmt.Sprintf("since=%d", seq)
	if !strings.HasSuffix(ce.Reason, want) {
		t.Fatalf("close reason %q; want it to end with %q", ce.Reason, want)
	}
	waitFor(t, "connection ended", func() bool { return srv.Connections() == 0 })

	r := dial(t, hs.URL, "/v1/ws?output_id=stall&"+want, nil)
	readControl(t, r, wire.TypeHello)
	if h := readFrames(t, r, 1)[0]; h.Seq != after {
		t.Fatalf("resumed: got seq %d; want %d", h.Seq, after)
	}
}
