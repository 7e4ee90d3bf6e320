//go:build unix

package gateway

import "syscall"

// awaitReadable returns when the client sent bytes the library has not
// read, the connection failed, or it was closed; it blocks in a shallow
// call (see clientConn). On a connection with no file descriptor it
// returns at once.
func (c *clientConn) awaitReadable() {
	if c.ready() {
		return
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var b [1]byte
	// Read calls the function again each time the descriptor becomes
	// readable, until it returns true.
	_ = raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}
