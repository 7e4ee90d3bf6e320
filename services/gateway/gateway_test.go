package gateway

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

func TestTargeting(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	a := dial(t, hs.URL, "/v1/ws?output_id=out&client_id=a", nil)
	b := dial(t, hs.URL, "/v1/ws?output_id=out&client_id=b", nil)
	bc := dial(t, hs.URL, "/v1/ws?output_id=out", nil)
	cf := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=a", nil)
	for name, c := range map[string]*testConn{"a": {a, "a"}, "b": {b, "b"}, "broadcast": {bc, ""}} {
		h := readControl(t, c.Conn, wire.TypeHello)
		if h.Gateway != "gw-test" || h.OutputID != "out" || h.ClientID != c.cid || h.Since == nil {
			t.Fatalf("%s: got hello %+v; want gateway gw-test, output out, client %q, since set", name, h, c.cid)
		}
	}
	m := readMsg(t, cf)
	if want := wire.Status("a"); !bytes.Equal(m.raw, want) {
		t.Fatalf("comfy first message: got %s; want %s", m.raw, want)
	}

	sa := p.publish("out", "a", img(1))
	sb := p.publish("out", "b", img(2))
	p.publish("other", "a", img(3)) // another output: only the comfy socket
	sall := p.publish("out", "", img(4))

	tests := []struct {
		name string
		c    *testConn
		want []uint64
	}{
		{"client a", &testConn{a, "a"}, []uint64{sa, sall}},
		{"client b", &testConn{b, "b"}, []uint64{sb, sall}},
		{"broadcast only", &testConn{bc, ""}, []uint64{sall}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readFrames(t, tt.c.Conn, len(tt.want))
			for i, h := range got {
				if h.Seq != tt.want[i] {
					t.Fatalf("frame %d: got seq %d; want %d", i, h.Seq, tt.want[i])
				}
				if h.ClientID != "" && h.ClientID != tt.c.cid {
					t.Fatalf("frame %d: got client %q; want %q or broadcast", i, h.ClientID, tt.c.cid)
				}
			}
		})
	}
	// A later frame proves nothing else was queued before it.
	last := p.publish("out", "", img(5))
	for _, c := range []*testConn{{a, "a"}, {b, "b"}, {bc, ""}} {
		if h := readFrames(t, c.Conn, 1)[0]; h.Seq != last {
			t.Fatalf("client %q: got seq %d; want %d (nothing between)", c.cid, h.Seq, last)
		}
	}

	t.Run("comfy golden frames", func(t *testing.T) {
		wantImgs := []struct {
			oid string
			img []byte
		}{{"out", img(1)}, {"other", img(3)}, {"out", img(4)}, {"out", img(5)}}
		for i, w := range wantImgs {
			m := readMsg(t, cf)
			if m.text {
				t.Fatalf("frame %d: got text %s; want binary", i, m.raw)
			}
			var head [32]byte
			binary.BigEndian.PutUint32(head[0:], 1)
			binary.BigEndian.PutUint32(head[4:], uint32(frame.WEBP))
			copy(head[8:], w.oid)
			if !bytes.Equal(m.raw[:32], head[:]) {
				t.Fatalf("frame %d header: got % x; want % x", i, m.raw[:32], head)
			}
			golden, _ := wire.EncodeComfy(w.oid, frame.WEBP, w.img)
			if !bytes.Equal(m.raw, golden) {
				t.Fatalf("frame %d: got %q; want %q", i, m.raw, golden)
			}
		}
	})
}
