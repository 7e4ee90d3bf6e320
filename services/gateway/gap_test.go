package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/wire"
)

// smallWindowDial dials with a 64 KiB socket receive buffer (which turns
// off the kernel's buffer growth), so that a client that stops reading
// stalls the gateway's writer after at most a few MiB.
func smallWindowDial(t *testing.T, base, pathQuery string) *websocket.Conn {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	t.Cleanup(hc.CloseIdleConnections)
	return dial(t, base, pathQuery, &websocket.DialOptions{HTTPClient: hc})
}

// TestGapDuringCatchUp: the stream is purged while a replay's client is
// stalled. Whatever the gateway had read into memory before the purge is
// still delivered; what it had not is reported in gap messages. Every
// frame of the client's output is delivered or inside a gap, once, in
// order; other outputs' frames are never sent.
func TestGapDuringCatchUp(t *testing.T) {
	tests := []struct {
		name string
		keep uint64 // messages the purge keeps, of both outputs
	}{
		{"window moves past the read position", 100},
		{"window moves past the end of the read", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := testNATS(t)
			_, hs := testGateway(t, ns, nil)
			p := newPublisher(t, ns)

			// The second frame (6 MiB) cannot pass the stalled client's
			// socket buffers, so the gateway's writer is held while the
			// stream is purged. Another output's frames sit between the
			// client's.
			var mine []uint64
			for i := range 300 {
				b := make([]byte, 4<<10)
				if i == 1 {
					b = make([]byte, 6<<20)
				}
				b[0] = byte(i)
				mine = append(mine, p.publish("o", "", b))
				p.publish("other", "", img(i))
			}
			c := smallWindowDial(t, hs.URL, "/v1/ws?output_id=o&since=0")
			readControl(t, c, wire.TypeHello)
			checkSeqs(t, readFrames(t, c, 1), mine[:1]) // the replay runs

			st, err := p.js.Stream(context.Background(), testStreamName())
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Purge(context.Background(), jetstream.WithPurgeKeep(tt.keep)); err != nil {
				t.Fatal(err)
			}

			seen := map[uint64]int{mine[0]: 1}
			last := mine[0]
			gaps := 0
			for {
				m := readMsg(t, c)
				if m.ctl != nil && m.ctl.Type == wire.TypeLive {
					break
				}
				if m.ctl != nil {
					if m.ctl.Type != wire.TypeGap || m.ctl.From <= last || m.ctl.To < m.ctl.From {
						t.Fatalf("got control %s after seq %d; want frames and gaps after it, then live", m.raw, last)
					}
					gaps++
					for _, s := range mine {
						if s >= m.ctl.From && s <= m.ctl.To {
							seen[s]++
						}
					}
					last = m.ctl.To
					continue
				}
				if m.hdr.Seq <= last || m.hdr.OutputID != "o" {
					t.Fatalf("got frame %d of %q after seq %d; want frames of o in order", m.hdr.Seq, m.hdr.OutputID, last)
				}
				seen[m.hdr.Seq]++
				last = m.hdr.Seq
			}
			for _, s := range mine {
				if seen[s] != 1 {
					t.Fatalf("frame %d: delivered or reported lost %d times; want once", s, seen[s])
				}
			}
			next := p.publish("o", "", img(1))
			checkSeqs(t, readFrames(t, c, 1), []uint64{next})
			if g := metricValue(t, hs.URL, "framecast_gateway_gaps_total"); g != float64(gaps) {
				t.Errorf("gaps metric: got %v; want %d, the gap messages sent", g, gaps)
			}
		})
	}
}

func headers(seqs []uint64) []wire.Header {
	hs := make([]wire.Header, len(seqs))
	for i, s := range seqs {
		hs[i].Seq = s
	}
	return hs
}

// TestGapSkipsNothingElse: a replay of frames between which other outputs'
// frames were removed from the stream (by a purge of that subject) sends
// every frame and no gap, however far the read jumps.
func TestGapSkipsNothingElse(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	var mine []uint64
	for i := range 20 {
		mine = append(mine, p.publish("o", "", img(i)))
		for range 5 {
			p.publish("other", "", img(i))
		}
	}
	st, err := p.js.Stream(context.Background(), testStreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background(), jetstream.WithPurgeSubject("outputs.other.>")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&since=%d", mine[0]-1), nil)
	readControl(t, c, wire.TypeHello)
	checkSeqs(t, readFrames(t, c, len(mine)), mine)
	readControl(t, c, wire.TypeLive)
}
