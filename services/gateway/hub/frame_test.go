package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

func refMeta() frame.Meta {
	return frame.Meta{OutputID: "o", Format: frame.PNG, Width: 1, Height: 1, BatchSize: 1, Object: "k/0", ObjectSize: 5}
}

// TestResolveOnce: many writers resolving one frame fetch it once and
// share the same wire bytes.
func TestResolveOnce(t *testing.T) {
	f := NewFrame(7, "~all", refMeta(), nil)
	if f.Resolved() || f.Native() != nil || f.Size() != 5 {
		t.Fatalf("before Resolve: resolved %v, native %q, size %d; want false, nil, 5", f.Resolved(), f.Native(), f.Size())
	}
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(ctx context.Context, name string) ([]byte, error) {
		fetches.Add(1)
		<-release
		return []byte("image"), nil
	}
	var wg sync.WaitGroup
	natives := make([][]byte, 20)
	for i := range natives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Resolve(context.Background(), fetch); err != nil {
				t.Errorf("Resolve: %v", err)
			}
			natives[i] = f.Native()
		}()
	}
	close(release)
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("got %d fetches; want 1", n)
	}
	h, img, err := wire.DecodeNative(natives[0])
	if err != nil || h.Seq != 7 || string(img) != "image" {
		t.Fatalf("native frame: seq %d image %q err %v; want seq 7, image %q", h.Seq, img, err, "image")
	}
	for i, b := range natives {
		if &b[0] != &natives[0][0] {
			t.Fatalf("writer %d got its own copy of the wire bytes; want the shared slice", i)
		}
	}
}

func TestResolveFailures(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		remember bool
	}{
		{"gone is remembered", fmt.Errorf("%w: expired", ErrGone), true},
		{"other errors are retried", errors.New("timeout"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFrame(1, "s", refMeta(), nil)
			calls := 0
			fetch := func(context.Context, string) ([]byte, error) {
				calls++
				if calls == 1 {
					return nil, tt.err
				}
				return []byte("late"), nil
			}
			if err := f.Resolve(context.Background(), fetch); !errors.Is(err, tt.err) {
				t.Fatalf("first Resolve: got %v; want %v", err, tt.err)
			}
			err := f.Resolve(context.Background(), fetch)
			switch {
			case tt.remember && (!errors.Is(err, ErrGone) || calls != 1):
				t.Fatalf("second Resolve: got %v after %d fetches; want ErrGone without fetching again", err, calls)
			case !tt.remember && (err != nil || string(f.Image()) != "late"):
				t.Fatalf("second Resolve: got %v, image %q; want a new fetch that succeeds", err, f.Image())
			}
		})
	}
}

func TestInlineFrameResolved(t *testing.T) {
	m := refMeta()
	m.Object, m.ObjectSize = "", 0
	f := NewFrame(3, "s", m, []byte("abc"))
	if err := f.Resolve(context.Background(), nil); err != nil || !f.Resolved() || f.Size() != 3 {
		t.Fatalf("inline frame: Resolve %v, resolved %v, size %d; want nil, true, 3", err, f.Resolved(), f.Size())
	}
	if _, img, _ := wire.DecodeNative(f.Native()); string(img) != "abc" {
		t.Fatalf("native image %q; want abc", img)
	}
}
