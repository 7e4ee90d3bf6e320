//go:build linux

package zerocopy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

type arenaFile struct {
	f  *os.File
	rc syscall.RawConn
}

// New makes an arena in a new memory file.
func New() (*Arena, error) {
	fd, err := unix.MemfdCreate("framecast-spans", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("zerocopy: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "framecast-spans")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("zerocopy: %w", err)
	}
	return &Arena{file: arenaFile{f: f, rc: rc}}, nil
}

// Close closes the memory file; spans can no longer be made or sent, and
// the memory goes once the kernel has sent what it queued.
func (a *Arena) Close() error { return a.file.f.Close() }

// Put makes a span of the parts, one after the other.
func (a *Arena) Put(parts ...[]byte) (*Span, error) {
	var n int64
	for _, p := range parts {
		n += int64(len(p))
	}
	if n == 0 {
		return nil, errors.New("zerocopy: empty span")
	}
	pages := roundUp(n)
	a.mu.Lock()
	off := a.end
	a.end += pages
	a.mu.Unlock()

	iov := make([][]byte, 0, len(parts))
	for _, p := range parts {
		if len(p) > 0 {
			iov = append(iov, p)
		}
	}
	var werr error
	err := a.file.rc.Control(func(fd uintptr) {
		at := off
		for len(iov) > 0 {
			w, err := unix.Pwritev(int(fd), iov, at)
			if err != nil {
				if err == unix.EINTR {
					continue
				}
				werr = err
				return
			}
			at += int64(w)
			for w > 0 {
				k := min(w, len(iov[0]))
				iov[0] = iov[0][k:]
				w -= k
				if len(iov[0]) == 0 {
					iov = iov[1:]
				}
			}
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		a.cut(off, pages)
		return nil, fmt.Errorf("zerocopy: write span: %w", err)
	}
	a.held.Add(pages)
	s := &Span{a: a, off: off, n: n, pages: pages}
	runtime.AddCleanup(s, func(r [2]int64) {
		a.cut(r[0], r[1])
		a.held.Add(-r[1])
	}, [2]int64{off, pages})
	return s, nil
}

// cut frees the pages of [off, off+n): whole pages, punched out of the
// file.
func (a *Arena) cut(off, n int64) {
	_ = a.file.rc.Control(func(fd uintptr) {
		_ = unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
}

// Sender sends spans to one socket. It allocates nothing per send: a
// fan-out sends every frame to every socket.
type Sender struct {
	sock     syscall.RawConn
	progress func(int)
	// Bound once: a method value made per send would be allocated.
	withSource func(uintptr)
	write      func(uintptr) bool

	// The send in progress.
	src      int
	off, end int64
	err      error
}

// NewSender returns a Sender to the socket behind sock; progress is told
// each write's byte count.
func NewSender(sock syscall.RawConn, progress func(int)) *Sender {
	s := &Sender{sock: sock, progress: progress}
	s.withSource = s.source
	s.write = s.writeTo
	return s
}

// Send writes sp to the socket, waiting while the socket's buffer is full.
// On an error, part of the span may have been sent. A Sender sends one
// span at a time.
func (s *Sender) Send(sp *Span) error {
	s.off, s.end, s.err = sp.off, sp.off+sp.n, nil
	if err := sp.a.file.rc.Control(s.withSource); err != nil {
		return ErrClosed
	}
	runtime.KeepAlive(sp) // its pages stay until the send is over
	return s.err
}

// source runs with the arena's file descriptor held open.
func (s *Sender) source(src uintptr) {
	s.src = int(src)
	if err := s.sock.Write(s.write); s.err == nil {
		s.err = err
	}
}

// writeTo sends what is left of the span; false: wait until the socket
// takes more.
func (s *Sender) writeTo(dst uintptr) bool {
	for s.off < s.end {
		n, err := unix.Sendfile(int(dst), s.src, &s.off, int(min(s.end-s.off, 1<<30)))
		if n > 0 {
			s.progress(n)
		}
		switch {
		case err == unix.EAGAIN:
			return false
		case err == unix.EINTR:
		case err != nil:
			s.err = err
			return true
		case n == 0:
			s.err = io.ErrUnexpectedEOF
			return true
		}
	}
	return true
}
