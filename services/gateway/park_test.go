package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/wire"
)

// rawFrame is a websocket frame as a test client writes it (masked) or
// reads it.
type rawFrame struct {
	fin     bool
	op      byte
	payload []byte
}

func (f rawFrame) encode() []byte {
	b0 := f.op
	if f.fin {
		b0 |= 0x80
	}
	h := []byte{b0}
	switch n := len(f.payload); {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126, byte(n>>8), byte(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	key := make([]byte, 4)
	_, _ = rand.Read(key)
	h = append(h, key...)
	for i, c := range f.payload {
		h = append(h, c^key[i%4])
	}
	return h
}

// readRawFrame reads one frame, masked or not.
func readRawFrame(r *bufio.Reader) (rawFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return rawFrame{}, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126, 127:
		ext := make([]byte, map[uint64]int{126: 2, 127: 8}[n])
		if _, err := io.ReadFull(r, ext); err != nil {
			return rawFrame{}, err
		}
		n = 0
		for _, c := range ext {
			n = n<<8 | uint64(c)
		}
	}
	var key [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return rawFrame{}, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return rawFrame{}, err
	}
	for i := range p {
		p[i] ^= key[i%4]
	}
	return rawFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f, payload: p}, nil
}

// rawDial opens a websocket connection by hand and writes extra right
// after the upgrade request, in the same write.
func rawDial(t *testing.T, base, pathQuery string, extra []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", pathQuery)
	if _, err := c.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return c, br
}

// nextRaw reads frames until one of op, failing on a close frame.
func nextRaw(t *testing.T, c net.Conn, br *bufio.Reader, op byte) rawFrame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := readRawFrame(br)
		if err != nil {
			t.Fatalf("read frame (want opcode %d): %v", op, err)
		}
		if f.op == 8 {
			t.Fatalf("gateway closed: %q", f.payload)
		}
		if f.op == op {
			return f
		}
	}
}

// readerParked waits until every session reader is parked outside the
// websocket library, and fails if n readers are not all there.
func readerParked(t *testing.T, n int) {
	t.Helper()
	var parked, in int
	for range 500 {
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		parked, in = 0, 0
		for _, g := range strings.Split(string(buf), "\n\n") {
			if !strings.Contains(g, "gateway.(*session).read(") {
				continue
			}
			if strings.Contains(g, "gateway.(*clientConn).awaitReadable(") {
				parked++
			} else {
				in++
			}
		}
		if parked == n && in == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("session readers: %d parked outside the library, %d not; want %d parked", parked, in, n)
}

// TestReaderParks: after every kind of client frame (pings whole, split
// byte by byte, sent with the upgrade request, inside a fragmented
// message, followed by a message in the same write; messages with 16- and
// 64-bit lengths), the gateway answers pings, keeps the connection, sends
// frames, and its reader parks outside the websocket library.
func TestReaderParks(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	ping := func(s string) rawFrame { return rawFrame{fin: true, op: 9, payload: []byte(s)} }

	c, br := rawDial(t, hs.URL, "/v1/ws?output_id=park", ping("early").encode())
	if f := nextRaw(t, c, br, 10); string(f.payload) != "early" {
		t.Fatalf("pong %q; want early", f.payload)
	}
	readerParked(t, 1)

	steps := []struct {
		name   string
		writes [][]byte
		pongs  []string
	}{
		{"ping", [][]byte{ping("a").encode()}, []string{"a"}},
		{"ping byte by byte", split(ping("bb").encode(), 1), []string{"bb"}},
		{"ping then text", [][]byte{append(ping("c").encode(), rawFrame{fin: true, op: 1, payload: []byte("hi")}.encode()...)}, []string{"c"}},
		{"two pings", [][]byte{append(ping("d1").encode(), ping("d2").encode()...)}, []string{"d1", "d2"}},
		{"fragmented with a ping inside", [][]byte{
			rawFrame{op: 2, payload: bytes.Repeat([]byte{1}, 300)}.encode(),
			ping("e").encode(),
			rawFrame{fin: true, op: 0, payload: bytes.Repeat([]byte{2}, 200)}.encode(),
		}, []string{"e"}},
		{"fragmented, ping, end in one write", [][]byte{bytes.Join([][]byte{
			rawFrame{op: 1, payload: []byte("x")}.encode(),
			ping("f").encode(),
			rawFrame{fin: true, op: 0, payload: []byte("y")}.encode(),
			ping("g").encode(),
		}, nil)}, []string{"f", "g"}},
		{"16-bit length split", split(rawFrame{fin: true, op: 2, payload: bytes.Repeat([]byte{3}, 60000)}.encode(), 997), nil},
	}
	for _, st := range steps {
		for _, w := range st.writes {
			if _, err := c.Write(w); err != nil {
				t.Fatalf("%s: write: %v", st.name, err)
			}
			if len(st.writes) > 1 {
				time.Sleep(time.Millisecond) // separate reads on the gateway
			}
		}
		for _, want := range st.pongs {
			if f := nextRaw(t, c, br, 10); string(f.payload) != want {
				t.Fatalf("%s: pong %q; want %q", st.name, f.payload, want)
			}
		}
		readerParked(t, 1)
	}
	seq := p.publish("park", "", img(1))
	f := nextRaw(t, c, br, 2)
	h, _, err := wire.DecodeNative(f.payload)
	if err != nil || h.Seq != seq {
		t.Fatalf("frame: seq %d, %v; want %d", h.Seq, err, seq)
	}

	// A 64-bit length, on the ComfyDeploy endpoint's larger read limit.
	cc, cbr := rawDial(t, hs.URL, "/comfyui-deploy/ws?clientId=park", nil)
	big := rawFrame{fin: true, op: 2, payload: bytes.Repeat([]byte{4}, 70000)}.encode()
	if _, err := cc.Write(append(big, ping("h").encode()...)); err != nil {
		t.Fatal(err)
	}
	if f := nextRaw(t, cc, cbr, 10); string(f.payload) != "h" {
		t.Fatalf("pong %q; want h", f.payload)
	}
	readerParked(t, 2)

	// A close frame sent with the upgrade request is answered at once.
	xc, xbr := rawDial(t, hs.URL, "/v1/ws?output_id=park", rawFrame{fin: true, op: 8, payload: []byte{0x03, 0xe8}}.encode())
	_ = xc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := readRawFrame(xbr)
		if err != nil {
			t.Fatalf("close sent with the request: %v; want a close frame back", err)
		}
		if f.op == 8 {
			break
		}
	}
}

func split(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(size, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// TestClientConnFrames: random frame sequences, in random pieces, read as
// the library reads them: what clientConn passes on is the client's frames
// in order, with an empty binary message after a control frame (outside a
// fragmented message) where the reader asked for more, and nowhere else.
func TestClientConnFrames(t *testing.T) {
	for seed := range uint64(300) {
		rng := mrand.New(mrand.NewPCG(seed, 9))
		var sent []rawFrame
		fragmented := false
		for range 1 + rng.IntN(12) {
			var f rawFrame
			switch k := rng.IntN(4); {
			case k == 0:
				f = rawFrame{fin: true, op: byte(9 + rng.IntN(2)), payload: make([]byte, rng.IntN(126))}
			default:
				op := byte(1 + rng.IntN(2))
				if fragmented {
					op = 0
				}
				sizes := []int{0, 5, 125, 126, 300, 65535, 65536}
				f = rawFrame{fin: rng.IntN(2) == 0, op: op, payload: make([]byte, sizes[rng.IntN(len(sizes))])}
				fragmented = !f.fin
				if f.op == 2 && f.fin && len(f.payload) == 0 {
					f.op = 1 // an empty binary message is what clientConn adds
				}
			}
			sent = append(sent, f)
		}
		var stream []byte
		for _, f := range sent {
			stream = append(stream, f.encode()...)
		}
		pending := rng.IntN(min(len(stream), 40) + 1) // bytes net/http read with the request

		a, b := net.Pipe()
		go func() {
			rest := stream[pending:]
			for len(rest) > 0 {
				n := min(1+rng.IntN(200), len(rest))
				if _, err := b.Write(rest[:n]); err != nil {
					return
				}
				rest = rest[n:]
			}
			_ = b.Close()
		}()
		in := &clientConn{Conn: a, pending: stream[:pending]}
		br := bufio.NewReaderSize(in, readBufferSize)
		var got []rawFrame
		for {
			f, err := readRawFrame(br)
			if err != nil {
				break
			}
			got = append(got, f)
		}
		_ = a.Close()

		i := 0
		fragmented = false
		for j, f := range got {
			if f.op == 2 && f.fin && len(f.payload) == 0 && (i == len(sent) || !sameFrame(sent[i], f)) {
				if j == 0 || got[j-1].op < 8 || fragmented {
					t.Fatalf("seed %d: empty message at %d, not after a control frame outside a fragmented message", seed, j)
				}
				continue
			}
			if i == len(sent) || !sameFrame(sent[i], f) {
				t.Fatalf("seed %d: frame %d: got op %d fin %v len %d; want the client's frame %d", seed, j, f.op, f.fin, len(f.payload), i)
			}
			if f.op < 8 {
				fragmented = !f.fin
			}
			i++
		}
		if i != len(sent) {
			t.Fatalf("seed %d: %d of %d frames passed on", seed, i, len(sent))
		}
		if last := sent[len(sent)-1]; last.op >= 8 && !fragmented && got[len(got)-1].op != 2 {
			t.Fatalf("seed %d: no empty message after the last control frame", seed)
		}
	}
}

func sameFrame(a, b rawFrame) bool {
	return a.fin == b.fin && a.op == b.op && bytes.Equal(a.payload, b.payload)
}

// FuzzClientConnFollow: any bytes a client sends, in any pieces, leave
// clientConn's frame state consistent: a header shorter than its longest
// form, and the empty message due only at a frame boundary.
func FuzzClientConnFollow(f *testing.F) {
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4, 0x82, 0xfe, 0, 200}, uint8(3))
	f.Add(rawFrame{op: 2, payload: make([]byte, 70000)}.encode(), uint8(255))
	f.Fuzz(func(t *testing.T, b []byte, piece uint8) {
		c := &clientConn{}
		for len(b) > 0 {
			n := min(len(b), int(piece)+1)
			c.follow(b[:n])
			b = b[n:]
			if c.hn >= len(c.hdr) {
				t.Fatalf("header state at %d of %d bytes", c.hn, len(c.hdr))
			}
			if c.inject && (c.hn != 0 || c.payload != 0 || c.fragmented) {
				t.Fatalf("empty message due inside a frame (header %d bytes in, payload %d to come, fragmented %v)", c.hn, c.payload, c.fragmented)
			}
		}
	})
}
