package client

import (
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// afterReset stops a collector at the first frame after a reset to epoch.
func afterReset(epoch string) func(Message) bool {
	seen := false
	return func(m Message) bool {
		switch m := m.(type) {
		case *Control:
			seen = seen || m.Type == wire.TypeReset && m.Epoch == epoch
		case *Frame:
			return seen
		}
		return false
	}
}

func query(t *testing.T, g *gateway, n int, want string) {
	t.Helper()
	if got := g.request(t, n).URL.RawQuery; got != want {
		t.Errorf("connection %d query got %q; want %q", n, got, want)
	}
}

func resumeIs(t *testing.T, s *Stream, seq uint64, epoch string) {
	t.Helper()
	if gs, ge, ok := s.Resume(); gs != seq || ge != epoch || !ok {
		t.Errorf("Resume got %d, %q, %v; want %d, %q, true", gs, ge, ok, seq, epoch)
	}
}

// TestStreamEpochAndReset resumes with since and epoch, follows a reset
// right after hello and one in the middle of a connection (the stream
// recreated under it) down to lower sequences, and resumes in the new epoch.
func TestStreamEpochAndReset(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		switch n {
		case 0:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(5), Epoch: "e1"})
			sendFrame(t, ws, 6)
			sendFrame(t, ws, 7)
			ws.Close(wire.CloseGoingAway, "draining")
		case 1:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(7), Epoch: "e2"})
			sendControl(t, ws, wire.Control{Type: wire.TypeReset, Epoch: "e2", Since: u64(0), Message: "other-epoch"})
			sendFrame(t, ws, 1)
			sendFrame(t, ws, 2)
			ws.Close(wire.CloseGoingAway, "draining")
		case 2:
			sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(2), Epoch: "e2"})
			sendFrame(t, ws, 2) // a resend: dropped
			sendFrame(t, ws, 3)
			sendControl(t, ws, wire.Control{Type: wire.TypeReset, Epoch: "e3", Since: u64(1), Message: "recreated"})
			sendFrame(t, ws, 1) // at the reset's since: dropped
			sendFrame(t, ws, 2)
		}
	})
	cfg := StreamConfig{Config: Config{URL: g.URL, OutputID: "demo", Since: u64(5), Epoch: "e1"}}
	s, got := (&collector{}).run(t, cfg, afterReset("e3"))
	equal(t, got, []string{
		"hello 0..0 ", "frame 6 img-6", "frame 7 img-7",
		"hello 0..0 ", "reset e2 0 other-epoch", "frame 1 img-1", "frame 2 img-2",
		"hello 0..0 ", "frame 3 img-3", "reset e3 1 recreated", "frame 2 img-2",
	})
	query(t, g, 0, "epoch=e1&output_id=demo&since=5")
	query(t, g, 1, "epoch=e1&output_id=demo&since=7")
	query(t, g, 2, "epoch=e2&output_id=demo&since=2")
	resumeIs(t, s, 2, "e3")
}

// TestStreamLearnsEpochFromHello starts live and resumes with the epoch of
// the first hello.
func TestStreamLearnsEpochFromHello(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(10 + uint64(n)), Epoch: "e1"})
		sendFrame(t, ws, 11+uint64(n))
		if n == 0 {
			ws.Close(wire.CloseGoingAway, "draining")
		}
	})
	s, got := (&collector{}).run(t, StreamConfig{Config: Config{URL: g.URL, OutputID: "demo"}}, seqIs(12))
	equal(t, got, []string{"hello 0..0 ", "frame 11 img-11", "hello 0..0 ", "frame 12 img-12"})
	query(t, g, 0, "output_id=demo")
	query(t, g, 1, "epoch=e1&output_id=demo&since=11")
	resumeIs(t, s, 12, "e1")
}

// TestStreamHelloOfOtherEpochWaitsForReset: a connection lost between a
// hello naming another epoch and its reset resumes from the old position,
// not from the old sequence in the new epoch.
func TestStreamHelloOfOtherEpochWaitsForReset(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		sendControl(t, ws, wire.Control{Type: wire.TypeHello, Since: u64(9), Epoch: "e2"})
		if n == 0 {
			ws.Close(wire.CloseGoingAway, "draining")
			return
		}
		sendControl(t, ws, wire.Control{Type: wire.TypeReset, Epoch: "e2", Since: u64(3)})
		sendFrame(t, ws, 4)
	})
	cfg := StreamConfig{Config: Config{URL: g.URL, OutputID: "demo", Since: u64(7), Epoch: "e1"}}
	s, got := (&collector{}).run(t, cfg, seqIs(4))
	equal(t, got, []string{"hello 0..0 ", "hello 0..0 ", "reset e2 3 ", "frame 4 img-4"})
	query(t, g, 1, "epoch=e1&output_id=demo&since=7")
	resumeIs(t, s, 4, "e2")
}

// TestStreamComfyDeployEpoch: the ComfyDeploy endpoint takes epoch with
// since, and every reconnect repeats the Config's pair.
func TestStreamComfyDeployEpoch(t *testing.T) {
	g := newGateway(t, func(n int, ws *websocket.Conn, r *http.Request) {
		send(t, ws, websocket.MessageText, wire.Status("c1"))
		sendComfy(t, ws, "demo", "a"+itoa(uint64(n)))
		if n == 0 {
			ws.Close(wire.CloseGoingAway, "draining")
		}
	})
	stop := func(m Message) bool { f, ok := m.(*Frame); return ok && string(f.Image) == "a1" }
	cfg := StreamConfig{Config: Config{URL: g.URL, ClientID: "c1", ComfyDeploy: true, Since: u64(4), Epoch: "e1"}}
	_, got := (&collector{}).run(t, cfg, stop)
	equal(t, got, []string{"status 0..0 c1", "frame 0 a0", "status 0..0 c1", "frame 0 a1"})
	query(t, g, 0, "clientId=c1&epoch=e1&since=4")
	query(t, g, 1, "clientId=c1&epoch=e1&since=4")
}
