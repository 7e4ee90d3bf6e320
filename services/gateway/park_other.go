//go:build !unix

package gateway

// awaitReadable returns at once where the reader cannot wait for bytes
// outside the library: it then blocks inside it, with a larger stack.
func (c *clientConn) awaitReadable() {}
