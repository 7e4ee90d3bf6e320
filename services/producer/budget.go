package producer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"sync"
	"time"

	"github.com/framecast/framecast/shared/frame"
)

// Errors of the memory budget.
var (
	// errOverloaded: the budget stayed full for the whole wait. The request
	// gets 503 overloaded with Retry-After; nothing was published.
	errOverloaded = errors.New("overloaded")
	// errOverBudget: one request needs more than the budget could ever
	// give it. A retry fails the same way.
	errOverBudget = errors.New("over the memory budget of one request")
)

// budget bounds the memory that requests hold at once: request bodies as
// their bytes arrive, and images while they are decoded or encoded. It is
// shared by every request of a Server and safe for concurrent use.
//
// A holding of at most small bytes may use the whole budget; a larger one
// may fill only large bytes of it. The rest is kept for small requests, so
// an ordinary frame is published while large or hostile requests wait.
//
// A waiter is not queued behind others (as in x/sync/semaphore, which is
// first come, first served): every release wakes every waiter, and any
// that now fits proceeds. A small request is never held up by a large one
// that waits; a large one that cannot fit in time gets errOverloaded.
type budget struct {
	max, large, small int64

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced by every release
}

func newBudget(max int64) *budget {
	return &budget{max: max, large: max / 4 * 3, small: max / 64, changed: make(chan struct{})}
}

// inUse is the number of bytes held now.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// acquire takes n more bytes for a holder that already holds held. It
// waits up to wait for them, then returns errOverloaded; it returns
// errOverBudget at once when held+n is more than the holder may ever hold.
func (b *budget) acquire(ctx context.Context, n, held int64, wait time.Duration) error {
	limit := b.max
	if held+n > b.small {
		limit = b.large
	}
	if held+n > limit {
		return fmt.Errorf("%w: %d bytes; one request may hold at most %d", errOverBudget, held+n, b.large)
	}
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if b.used+n <= limit {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		changed := b.changed
		b.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return errOverloaded
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// lease is one request's share of the budget. It is used by one goroutine
// at a time; release returns everything it holds.
type lease struct {
	b    *budget
	wait time.Duration
	held int64
}

func (s *Server) newLease() *lease { return &lease{b: s.budget, wait: s.cfg.OverloadWait} }

// grow takes n more bytes (see budget.acquire).
func (l *lease) grow(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	if err := l.b.acquire(ctx, n, l.held, l.wait); err != nil {
		return err
	}
	l.held += n
	return nil
}

// shrink gives back n bytes of what the lease holds.
func (l *lease) shrink(n int64) {
	n = min(n, l.held)
	l.held -= n
	l.b.release(n)
}

func (l *lease) release() { l.shrink(l.held) }

// Growth of a body buffer: it starts at minBuffer bytes and doubles.
const minBuffer = 32 << 10

// read appends what r holds, up to its end or until buf holds limit bytes
// (limit <= 0: no limit), to buf[:0] and returns it. The buffer grows as
// bytes arrive, never past limit, and each growth is taken from the lease
// before it is allocated; cap(buf) must already be held by the lease.
// Errors are r's, or the lease's (errOverloaded, errOverBudget, ctx's).
func (l *lease) read(ctx context.Context, r io.Reader, buf []byte, limit int64) ([]byte, error) {
	buf = buf[:0]
	for limit <= 0 || int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			// A full buffer grows only once more bytes have come: a body
			// that ends just here, with an EOF of its own, costs no
			// doubling.
			var probe [512]byte
			p := probe[:]
			if limit > 0 {
				p = p[:min(int64(len(p)), limit-int64(len(buf)))]
			}
			n, err := r.Read(p)
			if n > 0 {
				var gerr error
				if buf, gerr = l.grown(ctx, buf, limit); gerr != nil {
					return buf, gerr
				}
				buf = append(buf, p[:n]...)
			}
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			if err != nil {
				return buf, err
			}
			continue
		}
		end := cap(buf)
		if limit > 0 {
			end = int(min(int64(end), limit))
		}
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// grown returns buf in a buffer twice its capacity (at least minBuffer,
// at most limit when limit > 0), the growth taken from the lease before
// it is allocated and the old buffer given back.
func (l *lease) grown(ctx context.Context, buf []byte, limit int64) ([]byte, error) {
	size := max(2*int64(cap(buf)), minBuffer)
	if limit > 0 {
		size = min(size, limit)
	}
	if err := l.grow(ctx, size); err != nil {
		return buf, err
	}
	grown := make([]byte, len(buf), size)
	copy(grown, buf)
	l.shrink(int64(cap(buf)))
	return grown, nil
}

// previewCost is the memory one preview of longest side side takes while
// it is made: the shrunk copy (8-bit NRGBA) and the WEBP encoder's.
func previewCost(side int) int64 {
	return int64(side)*int64(side)*4 + encodeCost(side, side, frame.WEBP)
}

// decodeCost is the memory that decoding an image of config c takes: its
// pixels at the size of c's color model, plus a copy for WEBP, which is
// decoded in the WebAssembly module's memory first, and for JPEG, whose
// progressive form keeps every coefficient.
func decodeCost(c image.Config, format string) int64 {
	var bpp int64
	switch c.ColorModel {
	case color.GrayModel, color.AlphaModel:
		bpp = 1
	case color.Gray16Model, color.Alpha16Model:
		bpp = 2
	case color.RGBAModel, color.NRGBAModel, color.YCbCrModel, color.CMYKModel:
		bpp = 4
	default:
		bpp = 8
		if _, ok := c.ColorModel.(color.Palette); ok {
			bpp = 1
		}
	}
	if format == "webp" || format == "jpeg" {
		bpp += 4
	}
	return int64(c.Width) * int64(c.Height) * bpp
}

// encodeCost is the memory that encoding an image of w×h pixels as f
// takes besides its pixels: an 8-bit RGBA copy, and for WEBP, whose
// encoder runs in a WebAssembly module, the copy in the module's memory
// and libwebp's own planes; the other encoders stream their output.
func encodeCost(w, h int, f frame.Format) int64 {
	bpp := int64(5)
	if f == frame.WEBP {
		bpp = 10
	}
	return int64(w) * int64(h) * bpp
}
