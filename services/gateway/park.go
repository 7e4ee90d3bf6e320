package gateway

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
)

// An idle connection's one goroutine is its reader, and what it costs is
// its stack. Blocked inside the websocket library's read, it needs some
// 2.2 KiB of frames, so its stack grows to 4 KiB, and the runtime keeps a
// parked goroutine's grown stack. So the reader parks outside the library
// (awaitReadable, a few hundred bytes of frames, in a 2 KiB stack), and
// enters it only when the client sent bytes (see session.read).
//
// The library returns from a read only with a data message, though: after
// a control frame (the pong that answers the gateway's ping, every ping
// interval) it goes on to read the next frame and would block inside. So
// clientConn, under the library's buffered reader, follows the client's
// frames and, when the library asks for more bytes just after a control
// frame, gives it an empty binary message first: the library returns it,
// the reader discards it as it does every client message, and parks again.

// syntheticFrame is an empty, final, masked binary frame: what a client
// would send for an empty binary message (mask key zero).
var syntheticFrame = [6]byte{0x82, 0x80}

// clientConn is a hijacked connection as the websocket library reads it:
// it follows the frames the client sends and adds an empty binary message
// after a control frame that is not inside a fragmented message.
type clientConn struct {
	net.Conn
	// br is the library's buffered reader over this connection.
	br *bufio.Reader
	// outside orders the reader's look at what is buffered (ready), made
	// outside the library, with reads the library makes on another
	// goroutine: the close handshake the writer runs (session.finish).
	// Reads inside the library are ordered by the library.
	outside sync.Mutex
	// pending: what the client sent after its upgrade request, which
	// net/http had read; it is read first.
	pending []byte

	hdr     [14]byte // the frame header being read
	hn      int      // bytes of hdr read
	payload uint64   // payload bytes of the current frame still to come
	control bool     // the current frame is a control frame
	// fragmented: a data message's final frame is still to come.
	fragmented bool
	// peerClosed: the client sent a close frame (zero-copy sends stop).
	peerClosed atomic.Bool
	// inject: the last whole frame was a control frame outside a
	// fragmented message; the next read at a frame boundary gets
	// syntheticFrame.
	inject bool
}

func (c *clientConn) Read(p []byte) (int, error) {
	if c.inject && len(p) > 0 {
		c.inject = false
		return copy(p, syntheticFrame[:]), nil // p is bufio's buffer: it holds all of it
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.follow(p[:n])
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.follow(p[:n])
	return n, err
}

// ready reports whether the library has bytes to read without waiting
// for the client.
func (c *clientConn) ready() bool {
	c.outside.Lock()
	defer c.outside.Unlock()
	return c.br.Buffered() > 0 || c.inject || len(c.pending) > 0
}

// follow moves the frame state over bytes the client sent.
func (c *clientConn) follow(b []byte) {
	for len(b) > 0 {
		if c.payload > 0 {
			k := min(c.payload, uint64(len(b)))
			c.payload -= k
			b = b[k:]
			if c.payload == 0 {
				c.ended()
			}
			continue
		}
		c.inject = false // more follows the last frame
		c.hdr[c.hn] = b[0]
		c.hn++
		b = b[1:]
		if c.hn < 2 || c.hn < headerLen(c.hdr[1]) {
			continue
		}
		c.hn = 0
		op := c.hdr[0] & 0x0f
		c.control = op >= 8
		if op == 8 {
			c.peerClosed.Store(true)
		}
		if !c.control {
			c.fragmented = c.hdr[0]&0x80 == 0
		}
		c.payload = payloadLen(c.hdr[1:])
		if c.payload == 0 {
			c.ended()
		}
	}
}

// ended: the current frame was read whole.
func (c *clientConn) ended() {
	c.inject = c.control && !c.fragmented
}

// headerLen is a frame header's length given its second byte: 2, the
// extended length and the mask key.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// payloadLen is the payload length a whole header (from its second byte)
// gives.
func payloadLen(h []byte) uint64 {
	switch n := h[0] & 0x7f; n {
	case 126:
		return uint64(h[1])<<8 | uint64(h[2])
	case 127:
		var v uint64
		for _, x := range h[1:9] {
			v = v<<8 | uint64(x)
		}
		return v
	default:
		return uint64(n)
	}
}
