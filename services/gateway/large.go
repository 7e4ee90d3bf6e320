package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/replay"
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
	data := f.Native()
	if s.comfy() {
		data = f.Comfy()
	}
	if data == nil {
		return nil // not expressible in the ComfyDeploy format
	}
	return s.write(false, data)
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
