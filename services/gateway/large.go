package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// Frames sent by reference (frame.Meta.Object) reach a session in two ways.
//
// Live, the hub hands every subscriber the same *hub.Frame, image not yet
// fetched; the session queues it, counting the size its reference states.
// The writer that dequeues it first fetches the image (hub.Frame.Resolve),
// off the dispatcher, while other writers of the same frame wait for that
// one fetch; the wire bytes are then built once and shared, as for inline
// frames. A writer blocks only on its own frame, so other connections and
// the dispatcher never wait for an object.
//
// From the stream (replay, catch-up), each session streams the object to
// its socket as one websocket message, holding one copy buffer, not the
// image.
//
// An object that no longer exists (aged out, deleted) is reported to a
// native client as a gap of that one sequence and skipped on ComfyDeploy,
// as frames past the stream's window are. Any other failure to fetch a
// live frame's object makes the writer read the stream again from that
// frame; if the object cannot be read from there either, the connection
// closes with 4008 and the sequence to resume from.

// copyBuffer is the buffer streaming one object to a socket.
const copyBuffer = 128 << 10

// errRefetch says a queued frame's object could not be fetched now; the
// writer reads the stream again from that frame.
var errRefetch = errors.New("object unavailable")

// fetchObject is the hub.Fetch of the session's live frames.
func (s *session) fetchObject(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.srv.cfg.WriteTimeout)
	defer cancel()
	b, err := s.srv.source.Object(ctx, name)
	if errors.Is(err, replay.ErrObjectGone) {
		return nil, fmt.Errorf("%w: %w", hub.ErrGone, err)
	}
	return b, err
}

// writeFrame writes a queued frame sent by reference, resolving it first.
func (s *session) writeFrame(it item) error {
	f := it.frame
	if err := f.Resolve(s.ctx, s.fetchObject); err != nil {
		switch {
		case errors.Is(err, hub.ErrGone):
			return s.objectGone(it.seq, err)
		case s.ctx.Err() != nil:
			return s.ctx.Err()
		}
		s.log.Warn("cannot fetch a large frame; reading the stream again from it", "seq", it.seq, "object", f.Meta.Object, "err", err)
		return fmt.Errorf("%w: %v", errRefetch, err)
	}
	data := f.Native()
	if s.comfy() {
		data = f.Comfy()
	}
	if data == nil {
		return nil
	}
	return s.write(false, data)
}

// refetch drops what is queued after the frame seq, which could not be
// written, and switches to catch-up from seq.
func (s *session) refetch(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.queue {
		s.queued -= it.size()
	}
	s.queue = nil
	s.last = seq - 1
	s.startHolding()
}

// objectGone reports the frame seq whose object no longer exists.
func (s *session) objectGone(seq uint64, err error) error {
	s.srv.metrics.gaps.Inc()
	s.log.Info("large frame's image is gone; reporting a gap", "seq", seq, "err", err)
	if s.comfy() {
		return nil
	}
	return s.write(true, wire.EncodeControl(wire.Control{Type: wire.TypeGap, From: seq, To: seq}))
}

// replayObject streams the object of stored frame seq to the socket as
// one message.
func (s *session) replayObject(seq uint64, meta frame.Meta) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.WriteTimeout)
	defer cancel()
	var head []byte
	if s.comfy() {
		var err error
		if head, err = wire.EncodeComfy(meta.OutputID, meta.Format, nil); err != nil {
			return nil
		}
	} else {
		head = wire.EncodeNative(wire.HeaderOf(seq, meta), nil)
	}
	r, size, err := s.srv.source.OpenObject(ctx, meta.Object)
	switch {
	case errors.Is(err, replay.ErrObjectGone):
		return s.objectGone(seq, err)
	case err != nil && s.ctx.Err() != nil:
		return s.ctx.Err()
	case err != nil:
		return fmt.Errorf("%w: large frame %d: %v", errStream, seq, err)
	}
	defer r.Close()
	w, err := s.ws.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	n, err := io.CopyBuffer(w, r, make([]byte, copyBuffer))
	if err != nil || n != size {
		// Part of the message is out; closing w would deliver a cut image
		// as a whole one. The connection is cut instead (the writer is
		// left open), and the client resumes with since.
		s.log.Warn("streaming a large frame failed; closing the connection", "seq", seq, "object", meta.Object, "sent", n, "size", size, "err", err)
		return fmt.Errorf("%w: large frame %d: %d of %d bytes: %v", errWrite, seq, n, size, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	s.frames.Inc()
	s.bytes.Add(float64(len(head)) + float64(n))
	return nil
}
