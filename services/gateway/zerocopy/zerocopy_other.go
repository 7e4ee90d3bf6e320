//go:build !linux

package zerocopy

import "syscall"

type arenaFile struct{}

// New reports ErrUnsupported: spans need Linux's memory files.
func New() (*Arena, error) { return nil, ErrUnsupported }

// Close does nothing.
func (a *Arena) Close() error { return nil }

// Put reports ErrUnsupported.
func (a *Arena) Put(parts ...[]byte) (*Span, error) { return nil, ErrUnsupported }

// SendTo reports ErrUnsupported.
func (s *Span) SendTo(sock syscall.RawConn, progress func(int)) error { return ErrUnsupported }
