package hub

import (
	"testing"

	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/frame"
)

func (e *env) publishRendition(oid string, r frame.Rendition) uint64 {
	e.t.Helper()
	return e.publishMeta(frame.Meta{OutputID: oid, Format: frame.WEBP, Width: 1, Height: 1, BatchSize: 1, Rendition: r})
}

// TestRenditions: a cursor takes the renditions its watch asks for, from
// the stream (a resume) and live alike; full frames by default.
func TestRenditions(t *testing.T) {
	e := newEnv(t, 0)
	var previews, fulls []uint64
	for range 2 {
		previews = append(previews, e.publishRendition("o", frame.Preview))
		fulls = append(fulls, e.publishRendition("o", frame.Full))
	}
	all := []uint64{previews[0], fulls[0], previews[1], fulls[1]}
	tests := []struct {
		name       string
		renditions replay.Renditions
		want       []uint64
	}{
		{"default", replay.FullOnly, fulls},
		{"preview", replay.PreviewsOnly, previews},
		{"all", replay.AllRenditions, all},
	}
	cursors := make([]*Cursor, len(tests))
	wakers := make([]waker, len(tests))
	zero := uint64(0)
	for i, tt := range tests {
		w := watch("o", "")
		w.Renditions = tt.renditions
		wakers[i] = make(waker, 1)
		cursors[i] = join(t, e.h, wakers[i], &zero, w)
	}
	for i, tt := range tests {
		t.Run(tt.name+"/replayed", func(t *testing.T) {
			checkOrder(t, drain(t, cursors[i], wakers[i], len(tt.want)), tt.want)
		})
	}
	// Live: a preview then a full frame; each cursor's next entries are
	// what it takes of them, so nothing it must skip came in between.
	p := e.publishRendition("o", frame.Preview)
	f := e.publishRendition("o", frame.Full)
	live := map[replay.Renditions][]uint64{replay.FullOnly: {f}, replay.PreviewsOnly: {p}, replay.AllRenditions: {p, f}}
	for i, tt := range tests {
		t.Run(tt.name+"/live", func(t *testing.T) {
			want := live[tt.renditions]
			checkOrder(t, drain(t, cursors[i], wakers[i], len(want)), want)
		})
	}
}
