// Package zerocopy sends the same bytes to many sockets without copying
// them per socket: an Arena keeps each span of bytes, once, in a memory
// file (memfd), and a Sender hands its pages to a socket with
// sendfile. The kernel then queues references to the pages, where a write
// would copy the bytes into every socket's buffer.
//
// A span's pages are never written again once it is made, and a span
// owns whole pages: when it becomes unreachable its pages are cut from the
// file (a punched hole), while data the kernel still has queued keeps the
// pages it references, unchanged.
package zerocopy

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
)

// ErrUnsupported: the platform has no memory files or sendfile to sockets.
var ErrUnsupported = errors.New("zerocopy: not supported on this platform")

// ErrClosed: the arena was closed.
var ErrClosed = errors.New("zerocopy: arena closed")

// Arena is a memory file of spans.
type Arena struct {
	file arenaFile

	mu  sync.Mutex
	end int64 // the next span's offset; offsets are never reused

	held atomic.Int64 // bytes of the spans not yet cut (page-rounded)
}

// Span is bytes in an arena. Hold it (a reference) while it may be sent:
// once unreachable, its pages go.
type Span struct {
	a     *Arena
	off   int64
	n     int64
	pages int64 // n rounded up to whole pages
}

// Len is the span's length in bytes.
func (s *Span) Len() int64 { return s.n }

// Held is how many bytes the arena's spans hold, rounded up to pages.
func (a *Arena) Held() int64 { return a.held.Load() }

// pageSize is the unit spans are rounded up to: the system's memory page.
// A span that shared a page with another could not be cut without writing
// zeroes into that page, which data queued in a socket may still
// reference.
var pageSize = int64(os.Getpagesize())

func roundUp(n int64) int64 { return (n + pageSize - 1) &^ (pageSize - 1) }
