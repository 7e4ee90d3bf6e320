package gateway

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// largeImage is n random bytes: larger than any inline limit used here.
func largeImage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func (p *publisher) bucket() jetstream.ObjectStore {
	p.t.Helper()
	c, _ := testStream.WithDefaults()
	obs, err := p.js.ObjectStore(context.Background(), c.Bucket)
	if err != nil {
		p.t.Fatalf("object store: %v", err)
	}
	return obs
}

// publishLarge stores img in the large-frame bucket and publishes a
// reference to it, as the producer does for frames over its inline limit.
func (p *publisher) publishLarge(oid, cid string, img []byte) (uint64, string) {
	p.t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("test/%d", time.Now().UnixNano())
	if _, err := p.bucket().PutBytes(ctx, name, img); err != nil {
		p.t.Fatalf("put object: %v", err)
	}
	return p.publishRef(oid, cid, name, len(img)), name
}

// publishRef publishes a reference to the object name of size bytes.
func (p *publisher) publishRef(oid, cid, name string, size int) uint64 {
	p.t.Helper()
	ctx := context.Background()
	m := frame.Meta{OutputID: oid, ClientID: cid, Format: frame.WEBP, Width: 4, Height: 3,
		BatchIndex: 0, BatchSize: 1, Timestamp: time.Now().UnixMilli(), Object: name, ObjectSize: int64(size)}
	msg := nats.NewMsg(m.Subject())
	m.Header(msg.Header)
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		p.t.Fatalf("publish reference: %v", err)
	}
	return ack.Sequence
}

// publishGone publishes a reference to an object that was stored and is
// deleted again, as one that aged out of the bucket.
func (p *publisher) publishGone(oid, cid string) uint64 {
	p.t.Helper()
	name := fmt.Sprintf("gone/%d", time.Now().UnixNano())
	if _, err := p.bucket().PutBytes(context.Background(), name, largeImage(1<<20, 9)); err != nil {
		p.t.Fatalf("put object: %v", err)
	}
	if err := p.bucket().Delete(context.Background(), name); err != nil {
		p.t.Fatalf("delete object: %v", err)
	}
	return p.publishRef(oid, cid, name, 1<<20)
}

// readComfy reads one ComfyDeploy frame.
func readComfy(t *testing.T, c *websocket.Conn) wire.ComfyFrame {
	t.Helper()
	m := readMsg(t, c)
	if m.text {
		t.Fatalf("got text %s; want a binary frame", m.raw)
	}
	f, err := wire.DecodeComfy(m.raw)
	if err != nil {
		t.Fatalf("decode comfy frame: %v", err)
	}
	return f
}

type sent struct {
	seq uint64
	img []byte
}

// checkNative reads len(want) native frames and compares them.
func checkNative(t *testing.T, c *websocket.Conn, want []sent) {
	t.Helper()
	for i, w := range want {
		m := readMsg(t, c)
		if m.text || m.hdr.Seq != w.seq || !bytes.Equal(m.image, w.img) {
			t.Fatalf("native message %d: text %v seq %d, %d image bytes; want frame seq %d with its %d bytes", i, m.text, m.hdr.Seq, len(m.image), w.seq, len(w.img))
		}
	}
}

func checkComfy(t *testing.T, c *websocket.Conn, oid string, want []sent) {
	t.Helper()
	for i, w := range want {
		f := readComfy(t, c)
		if f.OutputID != oid || f.Format != frame.WEBP || !bytes.Equal(f.Image, w.img) {
			t.Fatalf("comfy frame %d: output %q, %d image bytes; want %q with the %d bytes of seq %d", i, f.OutputID, len(f.Image), oid, len(w.img), w.seq)
		}
	}
}

func TestLargeFrameLive(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	natives := []*websocket.Conn{
		dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c", nil),
		dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c", nil),
	}
	for _, c := range natives {
		readControl(t, c, wire.TypeHello)
	}
	comfy := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=c", nil)
	if m := readMsg(t, comfy); !m.text {
		t.Fatalf("comfy first message is binary; want the status text")
	}

	large := largeImage(3<<20, 1)
	var want []sent
	want = append(want, sent{p.publish("o", "c", img(0)), img(0)})
	seq, _ := p.publishLarge("o", "c", large)
	want = append(want, sent{seq, large})
	want = append(want, sent{p.publish("o", "", img(2)), img(2)})
	seq, _ = p.publishLarge("o", "", large[:2<<20])
	want = append(want, sent{seq, large[:2<<20]})

	for _, c := range natives {
		checkNative(t, c, want)
	}
	checkComfy(t, comfy, "o", want)
}

func TestLargeFrameReplay(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	large := largeImage(2<<20, 2)
	var want []sent
	want = append(want, sent{p.publish("o", "c", img(0)), img(0)})
	seq, _ := p.publishLarge("o", "c", large)
	want = append(want, sent{seq, large})
	want = append(want, sent{p.publish("o", "c", img(2)), img(2)})

	c := dial(t, hs.URL, "/v1/ws?output_id=o&client_id=c&since=0", nil)
	readControl(t, c, wire.TypeHello)
	checkNative(t, c, want)
	readControl(t, c, wire.TypeLive)

	comfy := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=c&since=0", nil)
	readMsg(t, comfy)
	checkComfy(t, comfy, "o", want)

	// A live large frame after the replay.
	seq, _ = p.publishLarge("o", "c", large[:1<<20])
	checkNative(t, c, []sent{{seq, large[:1<<20]}})
	checkComfy(t, comfy, "o", []sent{{seq, large[:1<<20]}})
}

// TestLargeFrameGone: a reference whose object no longer exists becomes a
// gap of that sequence on native, never an empty image; ComfyDeploy skips
// it.
func TestLargeFrameGone(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)

	before := p.publish("o", "", img(0))
	gone := p.publishGone("o", "")
	after := p.publish("o", "", img(1))

	c := dial(t, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&since=%d", before-1), nil)
	readControl(t, c, wire.TypeHello)
	checkNative(t, c, []sent{{before, img(0)}})
	if g := readControl(t, c, wire.TypeGap); g.From != gone || g.To != gone {
		t.Fatalf("replay gap %d..%d; want %d..%d", g.From, g.To, gone, gone)
	}
	checkNative(t, c, []sent{{after, img(1)}})
	readControl(t, c, wire.TypeLive)

	// Live, to both endpoints.
	comfy := dial(t, hs.URL, "/comfyui-deploy/ws", nil)
	readMsg(t, comfy)
	gone = p.publishGone("o", "")
	last := p.publish("o", "", img(2))
	if g := readControl(t, c, wire.TypeGap); g.From != gone || g.To != gone {
		t.Fatalf("live gap %d..%d; want %d..%d", g.From, g.To, gone, gone)
	}
	checkNative(t, c, []sent{{last, img(2)}})
	checkComfy(t, comfy, "o", []sent{{last, img(2)}})
}
