package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/services/gateway/zerocopy"
)

// Frames sent by reference (frame.Meta.Object) arrive, live or from the
// stream, without their image. A ring holds them like any frame, counting
// the size the reference states. The first writer that reaches one
// fetches the image (hub.Frame.Resolve), while the writers of other
// connections that reach the same frame wait for that one fetch; the wire
// bytes are then built once and shared, as for inline frames. A writer
// blocks only on its own frame, so other connections and the dispatcher
// never wait for an object.
//
// An object that no longer exists (aged out, deleted) is reported to a
// native client as a gap of that one sequence and skipped on ComfyDeploy,
// as frames past the stream's window are. Any other failure to fetch it
// is retried with backoff; if it keeps failing for hub.StreamRetry, the
// connection closes with 4008 and the sequence to resume from.

// fetchObject is the hub.Fetch of the session's frames.
func (s *session) fetchObject(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.srv.cfg.WriteTimeout)
	defer cancel()
	b, err := s.srv.source.Object(ctx, name)
	if errors.Is(err, replay.ErrObjectGone) {
		return nil, fmt.Errorf("%w: %w", hub.ErrGone, err)
	}
	return b, err
}

// writeFrame writes one frame, resolving a frame sent by reference first,
// or an event (a text message).
func (s *session) writeFrame(f *hub.Frame) error {
	if f.IsEvent() {
		data := f.Native()
		if s.comfy() {
			data = f.Comfy()
		}
		if err := s.write(true, data); err != nil {
			return err
		}
		s.srv.metrics.events.WithLabelValues(s.req.endpoint).Inc()
		return nil
	}
	if err := s.resolve(f); err != nil {
		if errors.Is(err, hub.ErrGone) {
			return s.objectGone(f.Seq, err)
		}
		return err
	}
	if sp := s.span(f); sp != nil {
		return s.sendSpan(sp)
	}
	data := f.Native()
	if s.comfy() {
		data = f.Comfy()
	}
	if data == nil {
		return nil // not expressible in the ComfyDeploy format
	}
	return s.write(false, data)
}

// ZeroCopyMin is the smallest frame (its image's bytes) sent from the
// zero-copy arena: below it, copying costs the kernel less than looking
// the pages up.
const ZeroCopyMin = 16 << 10

// span returns f's message for the connection as a zero-copy span, or nil
// to write it instead.
func (s *session) span(f *hub.Frame) *zerocopy.Span {
	if s.srv.arena == nil || s.wc.raw == nil || f.Size() < ZeroCopyMin {
		return nil
	}
	return f.Span(s.srv.arena, s.comfy())
}

// sendSpan sends a whole binary message from the arena, watched as write
// watches a write.
func (s *session) sendSpan(sp *zerocopy.Span) error {
	s.stall.Store(time.Now().UnixNano())
	err := s.wc.send(sp, s.in)
	s.stall.Store(0)
	if err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	s.frames.Inc()
	s.bytes.Add(float64(spanPayload(sp.Len())))
	return nil
}

// spanPayload is the payload of a server's websocket frame of n bytes:
// n less its header (2, 4 or 10 bytes).
func spanPayload(n int64) int64 {
	switch {
	case n-10 > 0xffff:
		return n - 10
	case n-4 >= 126:
		return n - 4
	}
	return n - 2
}

// resolve fetches f's image, retrying failures other than ErrGone with
// backoff for up to hub.StreamRetry (session.retry).
func (s *session) resolve(f *hub.Frame) error {
	var gone error
	err := s.retry(func() error {
		err := f.Resolve(s.ctx, s.fetchObject)
		if errors.Is(err, hub.ErrGone) {
			gone = err
			return nil
		}
		return err
	})
	switch {
	case gone != nil:
		return gone
	case err != nil && s.ctx.Err() == nil:
		return fmt.Errorf("%w: large frame %d: %v", errStream, f.Seq, err)
	}
	return err
}

// objectGone reports the frame seq whose object no longer exists.
func (s *session) objectGone(seq uint64, err error) error {
	s.log.Info("large frame's image is gone; reporting a gap", "seq", seq, "err", err)
	return s.gap(seq, seq)
}
