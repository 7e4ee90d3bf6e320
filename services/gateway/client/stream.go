package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// Backoff defaults of StreamConfig.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// StreamConfig configures a Stream.
type StreamConfig struct {
	// Config is the subscription. Its URL is used when URLs is empty; its
	// Since (with Epoch) or Last applies to the first connection only.
	Config

	// URLs are the gateways, tried in order and round robin: every ended
	// connection or failed attempt moves on to the next one.
	URLs []string

	// MinBackoff and MaxBackoff bound the wait between attempts: before
	// attempt n (0 after a connection that delivered a message) Run waits a
	// uniformly random time in [0, min(MaxBackoff, MinBackoff*2^n)] ("full
	// jitter"). Defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// OnDisconnect, when set, is called on Run's goroutine each time a dial
	// or a connection to url failed with err, before Run waits wait and
	// tries again. It must not block for long.
	OnDisconnect func(url string, err error, wait time.Duration)
}

// Handler receives a Stream's messages, one at a time, on the goroutine
// that called Run. Returning an error stops Run with that error.
type Handler func(ctx context.Context, m Message) error

// Stream is a subscription that survives disconnects. Run delivers its
// messages; Resume may be called from any goroutine.
//
// On the native endpoint the Stream resumes each new connection with
// since=<resume point>&epoch=<epoch>, where the resume point is the larger
// of the last frame or event sequence handed to the Handler, the since of
// the last hello, and the end (To) of the last gap handed to the Handler,
// and the epoch is the stream epoch those sequences belong to:
// Config.Epoch, else the first hello's. Within an epoch the Handler never
// sees a frame or event (wire.TypeEvent control) sequence twice, and sees
// them in sequence order but for one case: a frame the gateway found
// missing after it had sent later ones (a cluster's leader change) comes
// late rather than never, and is handed on then, once. The Stream tells
// it from a repeat by the last DedupWindow sequences it handed on; below
// those, and below where it started, nothing is handed on. Gap controls
// are always handed on.
//
// A reset control (wire.TypeReset) moves the Stream into the epoch it names
// and sets the resume point to its Since, also downward: the stream's
// sequences started over, and frames after Since follow and are handed on
// even where their sequences were seen before. The reset itself is handed
// to the Handler, so an application that keys anything by sequence can
// start over too. A hello whose epoch differs from the Stream's changes
// nothing: the gateway follows it with the reset that says where the
// Stream now stands, and until it has, a new connection resumes from the
// old position.
//
// ComfyDeploy frames and events carry no sequence, so on that endpoint a
// Stream can neither resume nor de-duplicate: every reconnect sends the Since of the
// Config as given (none by default: frames published while disconnected are
// lost; with a Since, frames after it are replayed again on every reconnect).
// When Config.ClientID is empty the Stream reconnects with the clientId the
// gateway assigned in its first status message, so targeted frames keep
// arriving.
type Stream struct {
	cfg StreamConfig

	mu       sync.Mutex
	resume   uint64
	resumeOK bool   // resume is set
	epoch    string // the epoch of resume; "" while unknown
	sid      string // ComfyDeploy clientId assigned by the gateway
	// seen holds the last DedupWindow sequences handed on, oldest first
	// (seenSet the same); every sequence at or below floor was handed on
	// or is not wanted (below where the Stream started).
	seen    []uint64
	seenSet map[uint64]struct{}
	floor   uint64
}

// DedupWindow is how many of the last sequences handed on a Stream
// remembers to tell a frame the gateway sends late (below the resume
// point, never handed on) from one handed on already.
const DedupWindow = 4096

// NewStream validates cfg and fills its defaults.
func NewStream(cfg StreamConfig) (*Stream, error) {
	if len(cfg.URLs) == 0 {
		if cfg.URL == "" {
			return nil, fmt.Errorf("%w: no gateway url; set URLs or URL", ErrInvalidConfig)
		}
		cfg.URLs = []string{cfg.URL}
	}
	cfg.URLs = append([]string(nil), cfg.URLs...)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, u := range cfg.URLs {
		if _, err := cfg.endpoint(u); err != nil {
			return nil, err
		}
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("%w: backoff %v..%v; want 0 < min <= max", ErrInvalidConfig, cfg.MinBackoff, cfg.MaxBackoff)
	}
	s := &Stream{cfg: cfg, seenSet: make(map[uint64]struct{})}
	if cfg.Since != nil && !cfg.ComfyDeploy {
		s.resume, s.resumeOK, s.epoch = *cfg.Since, true, cfg.Epoch
		s.floor = *cfg.Since
	}
	return s, nil
}

// Resume returns the sequence the next connection would resume after, the
// stream epoch it belongs to ("" while the gateway has named none), and
// whether there is a resume point yet; ok is always false on the ComfyDeploy
// endpoint. Since and Epoch of a Config given these values pick up where
// this Stream stands. Called from the Handler, it includes the message
// being handled.
func (s *Stream) Resume() (seq uint64, epoch string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resume, s.epoch, s.resumeOK
}

// handlerError marks an error returned by the Handler.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// Run connects and hands every message to h until ctx is done (it then
// returns ctx.Err() and calls h no more), h returns an error (returned as is), or a gateway
// rejects the subscription (an error wrapping ErrRejected). Every other
// failure — a refused dial, a dropped connection, a close code such as 1001
// or 4008, a message that cannot be decoded — is reported to OnDisconnect
// and followed by a new attempt on the next URL after the backoff.
//
// Run uses the calling goroutine and starts none that outlive it. It must
// not be called concurrently; a later call goes on from the resume point
// the previous one reached.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	attempt := 0
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		u := s.cfg.URLs[i%len(s.cfg.URLs)]
		got, err := s.session(ctx, u, h)
		var herr handlerError
		switch {
		case errors.As(err, &herr):
			return herr.err
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrRejected) || errors.Is(err, ErrInvalidConfig):
			return err
		}
		if got {
			attempt = 0
		}
		wait := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, attempt)
		attempt++
		if s.cfg.OnDisconnect != nil {
			s.cfg.OnDisconnect(u, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// session runs one connection to u. got reports whether it read any message.
func (s *Stream) session(ctx context.Context, u string, h Handler) (got bool, err error) {
	cfg := s.cfg.Config
	cfg.URL = u
	s.mu.Lock()
	if cfg.ComfyDeploy {
		if cfg.ClientID == "" {
			cfg.ClientID = s.sid
		}
	} else if s.resumeOK {
		since := s.resume
		cfg.Since, cfg.Epoch, cfg.Last = &since, s.epoch, 0
	}
	s.mu.Unlock()

	c, err := Dial(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer func() {
		if errors.Is(err, ErrMalformed) {
			c.ws.Close(websocket.StatusUnsupportedData, "malformed message")
			return
		}
		c.Close()
	}()
	for {
		m, err := c.Next(ctx)
		if err == nil {
			// Next may return a message it had already read when ctx ended.
			err = ctx.Err()
		}
		if err != nil {
			return got, err
		}
		got = true
		if !s.accept(m) {
			continue
		}
		if err := h(ctx, m); err != nil {
			return got, handlerError{err}
		}
	}
}

// accept updates the resume point for m and reports whether m goes to the
// Handler.
func (s *Stream) accept(m Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m := m.(type) {
	case *Frame:
		if s.cfg.ComfyDeploy {
			return true
		}
		return s.take(m.Seq)
	case *Control:
		switch {
		case s.cfg.ComfyDeploy:
			if m.Type == TypeStatus && m.SID != "" && s.cfg.ClientID == "" {
				s.sid = m.SID
			}
		case m.Type == wire.TypeHello:
			if m.Epoch != "" && s.epoch != "" && m.Epoch != s.epoch {
				// A reset follows; the old position stands until it does.
				break
			}
			if m.Epoch != "" {
				s.epoch = m.Epoch
			}
			if m.Since != nil {
				s.advance(*m.Since)
			}
		case m.Type == wire.TypeReset:
			// Conn.Next refuses a reset without since.
			s.resume, s.resumeOK, s.epoch = *m.Since, true, m.Epoch
			s.floor = *m.Since
			s.seen = s.seen[:0]
			clear(s.seenSet)
		case m.Type == wire.TypeEvent:
			// Events are stored in the stream like frames: the same rule.
			// Conn.Next refuses an event without seq.
			return s.take(*m.Seq)
		case m.Type == wire.TypeGap:
			// The sequences it names are not coming: none is handed on
			// later.
			s.advance(m.To)
			s.floor = max(s.floor, m.To)
		}
	}
	return true
}

// take reports whether a frame or event of sequence seq goes to the
// Handler: one past the resume point, which moves there, or a late one
// below it that was never handed on.
func (s *Stream) take(seq uint64) bool {
	switch {
	case !s.resumeOK:
		s.resume, s.resumeOK, s.floor = seq, true, seq-min(seq, 1)
	case seq > s.resume:
		s.resume = seq
	case seq <= s.floor:
		return false
	default:
		if _, dup := s.seenSet[seq]; dup {
			return false
		}
	}
	s.seen = append(s.seen, seq)
	s.seenSet[seq] = struct{}{}
	if len(s.seen) > DedupWindow {
		old := s.seen[0]
		s.seen = s.seen[1:]
		delete(s.seenSet, old)
		s.floor = max(s.floor, old)
	}
	return true
}

func (s *Stream) advance(seq uint64) {
	if !s.resumeOK {
		s.floor = seq // the first hello's since: nothing before is wanted
	}
	if !s.resumeOK || seq > s.resume {
		s.resume, s.resumeOK = seq, true
	}
}

// backoff is the wait before attempt n: uniform in [0, min(max, min*2^n)].
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 62 {
		if x := lo << n; x > 0 && x>>n == lo && x < hi {
			d = x
		}
	}
	if d <= 0 {
		return 0
	}
	if d == math.MaxInt64 {
		return rand.N(d)
	}
	return rand.N(d + 1)
}
