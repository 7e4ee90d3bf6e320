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

// Sender sends spans to one socket.
type Sender struct{}

// NewSender returns a Sender whose sends report ErrUnsupported.
func NewSender(sock syscall.RawConn, progress func(int)) *Sender { return &Sender{} }

// Send reports ErrUnsupported.
func (s *Sender) Send(sp *Span) error { return ErrUnsupported }
