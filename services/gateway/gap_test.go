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

// TestGapDuringCatchUp: frames that leave the stream while a replay is
// already reading it are reported with one gap message naming exactly
// the sequences lost; other outputs' frames skipped by the read are not
// gaps; everything else arrives in order.
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
			// socket buffers, so the gateway's writer is held inside the
			// replay's first batch while the stream is purged. Another
			// output's frames sit between the client's.
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
			info, err := st.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			first := info.State.FirstSeq // lowest sequence still stored

			var gaps []wire.Control
			got := []uint64{mine[0]}
			for {
				m := readMsg(t, c)
				if m.ctl != nil && m.ctl.Type == wire.TypeLive {
					break
				}
				if m.ctl != nil {
					if m.ctl.Type != wire.TypeGap {
						t.Fatalf("got control %s; want frames, gaps, then live", m.raw)
					}
					gaps = append(gaps, *m.ctl)
					if len(got) == 0 || m.ctl.From != got[len(got)-1]+1 || m.ctl.To != first-1 {
						t.Fatalf("gap %d..%d after seq %d; want %d..%d", m.ctl.From, m.ctl.To, got[len(got)-1], got[len(got)-1]+1, first-1)
					}
					continue
				}
				got = append(got, m.hdr.Seq)
			}
			if len(gaps) != 1 {
				t.Fatalf("got %d gap messages; want 1", len(gaps))
			}
			// Every frame of mine outside the gap, in order, and no other.
			var want []uint64
			for _, s := range mine {
				if s < gaps[0].From || s > gaps[0].To {
					want = append(want, s)
				}
			}
			checkSeqs(t, headers(got), want)
			if tt.keep == 0 && gaps[0].To != mine[len(mine)-1]+1 {
				// The last message stored was the other output's.
				t.Fatalf("gap to %d; want %d, the stream's last sequence", gaps[0].To, mine[len(mine)-1]+1)
			}
			next := p.publish("o", "", img(1))
			checkSeqs(t, readFrames(t, c, 1), []uint64{next})
			if g := metricValue(t, hs.URL, "framecast_gateway_gaps_total"); g != 1 {
				t.Errorf("gaps metric: got %v; want 1", g)
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
