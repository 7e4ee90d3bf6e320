package producer

import (
	"bytes"
	"context"
	"errors"
	"image"
	"net/http"
	"time"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/frame"
)

// previewCost is the memory one preview of longest side side takes while
// it is made: the shrunk copy (8-bit NRGBA) and the WEBP encoder's.
func previewCost(side int) int64 {
	return int64(side)*int64(side)*4 + encodeCost(side, side, frame.WEBP)
}

// previews makes the preview of every encoded frame (publish.Previews),
// one image decoded at a time under the lease; the encode histogram
// observes the whole request's previews once.
func (s *Server) previews(ctx context.Context, l *lease, side int, frames []publish.Frame) ([]publish.Frame, *apiError) {
	out := make([]publish.Frame, 0, len(frames))
	start := time.Now()
	defer func() { s.metrics.encode.Observe(time.Since(start).Seconds()) }()
	for i, f := range frames {
		c, format, err := image.DecodeConfig(bytes.NewReader(f.Data))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, CodeInvalidImage, "image %d does not decode for its preview: %v", i, err)
		}
		need := decodeCost(c, format) + previewCost(side)
		if err := l.grow(ctx, need); err != nil {
			return nil, budgetError(err)
		}
		p, err := publish.Previews(ctx, frames[i:i+1], side)
		l.shrink(need)
		if err != nil {
			if errors.Is(err, publish.ErrInvalid) && ctx.Err() == nil {
				return nil, errorf(http.StatusBadRequest, CodeInvalidImage, "image %d: %v; nothing was published", i, err)
			}
			return nil, encodeError(ctx, err)
		}
		out = append(out, p...)
	}
	return out, nil
}
