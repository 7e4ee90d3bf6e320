package gateway

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// TestZeroCopyFrames: frames from ZeroCopyMin bytes on go out from the
// zero-copy arena (whose bytes metric counts them) on both endpoints, and
// every client gets every frame byte for byte, a reader that falls
// megabytes behind too; with CopyFrames the same bytes are written.
func TestZeroCopyFrames(t *testing.T) {
	for _, copyFrames := range []bool{false, true} {
		t.Run(fmt.Sprintf("CopyFrames=%v", copyFrames), func(t *testing.T) {
			ns := testNATS(t)
			_, hs := testGateway(t, ns, func(c *Config) { c.CopyFrames = copyFrames })
			p := newPublisher(t, ns)
			native := dial(t, hs.URL, "/v1/ws?output_id=zc&client_id=zc", nil)
			readControl(t, native, wire.TypeHello)
			behind := dial(t, hs.URL, "/v1/ws?output_id=zc&client_id=zc", nil)
			readControl(t, behind, wire.TypeHello)
			comfy := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=zc", nil)
			readMsg(t, comfy) // the status message

			sizes := []int{100, ZeroCopyMin - 1, ZeroCopyMin, 100 << 10, 900 << 10, 900 << 10, 900 << 10, 900 << 10}
			imgs := make([][]byte, len(sizes))
			seqs := make([]uint64, len(sizes))
			var large int
			for i, n := range sizes {
				imgs[i] = make([]byte, n)
				_, _ = rand.Read(imgs[i])
				seqs[i] = p.publish("zc", "zc", imgs[i])
				if n >= ZeroCopyMin {
					large += n
				}
			}
			check := func(name string, c *websocket.Conn, comfy bool) {
				for i := range sizes {
					m := readMsg(t, c)
					img := m.image
					if comfy {
						cf, err := wire.DecodeComfy(m.raw)
						if err != nil {
							t.Fatalf("%s: frame %d: %v", name, i, err)
						}
						img = cf.Image
					} else if m.hdr.Seq != seqs[i] {
						t.Fatalf("%s: frame %d: seq %d; want %d", name, i, m.hdr.Seq, seqs[i])
					}
					if !bytes.Equal(img, imgs[i]) {
						t.Fatalf("%s: frame %d: %d bytes differ from the %d published", name, i, len(img), len(imgs[i]))
					}
				}
			}
			check("native", native, false)
			check("comfy", comfy, true)
			time.Sleep(100 * time.Millisecond) // the gateway waits on the full socket meanwhile
			check("behind", behind, false)

			held := metricValue(t, hs.URL, "framecast_gateway_sendfile_bytes")
			if copyFrames && held != 0 || !copyFrames && held < float64(2*large) {
				t.Fatalf("sendfile bytes %v; want %v", held, map[bool]string{true: "0", false: fmt.Sprintf("at least %d (native and ComfyDeploy messages of the large frames)", 2*large)}[copyFrames])
			}
		})
	}
}

// TestZeroCopyAfterClientClose: a client that sends its close frame
// while large frames are on their way gets the gateway's close frame and
// nothing after it (RFC 6455 section 5.5.1), and the session ends.
func TestZeroCopyAfterClientClose(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	img := make([]byte, 200<<10)
	for range 20 {
		c, br := rawDial(t, hs.URL, "/v1/ws?output_id=zcc", nil)
		nextRaw(t, c, br, 1) // hello
		for range 5 {
			p.publish("zcc", "", img)
		}
		nextRaw(t, c, br, 2)
		if _, err := c.Write(rawFrame{fin: true, op: 8, payload: []byte{0x03, 0xe8}}.encode()); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		closed := false
		for {
			f, err := readRawFrame(br)
			if err != nil {
				break // the gateway closed the connection
			}
			if closed {
				t.Fatalf("opcode %d after the close frame", f.op)
			}
			closed = f.op == 8
		}
		if !closed {
			t.Fatal("no close frame before the connection ended")
		}
		_ = c.Close()
	}
	for i := 0; srv.Connections() > 0; i++ {
		if i > 500 {
			t.Fatalf("%d connections left; want 0", srv.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
