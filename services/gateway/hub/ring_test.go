package hub

import (
	"fmt"
	"slices"
	"testing"

	"github.com/framecast/framecast/shared/frame"
)

// testRing returns a ring whose live span starts at liveFrom, holding
// inline frames of size bytes at seqs.
func testRing(liveFrom uint64, size int, seqs ...uint64) *ring {
	r := &ring{liveFrom: liveFrom, last: map[string]uint64{}}
	for _, s := range seqs {
		r.insert(NewFrame(s, "~all", frame.Meta{}, make([]byte, size)), 0)
	}
	return r
}

func TestCoverage(t *testing.T) {
	tests := []struct {
		name     string
		liveFrom uint64
		spans    []span // added in order
		uncover  []uint64
		w        uint64 // the hub's watermark
		p        uint64
		wantEnd  uint64
		wantOK   bool
	}{
		{"live span follows the watermark", 10, nil, nil, 30, 12, 30, true},
		{"live span ahead of the watermark", 10, nil, nil, 5, 12, 11, true},
		{"before the live span", 10, nil, nil, 30, 9, 0, false},
		{"in a read span", 10, []span{{3, 6}}, nil, 30, 4, 6, true},
		{"between spans", 10, []span{{3, 6}}, nil, 30, 7, 0, false},
		{"span joins the live span", 10, []span{{3, 9}}, nil, 30, 4, 30, true},
		{"adjacent spans merge", 20, []span{{3, 6}, {7, 9}}, nil, 30, 4, 9, true},
		{"overlapping spans merge", 20, []span{{3, 8}, {5, 12}}, nil, 30, 4, 12, true},
		{"evicted live seq splits the live span", 10, nil, []uint64{15}, 30, 11, 14, true},
		{"after the evicted seq", 10, nil, []uint64{15}, 30, 16, 30, true},
		{"the evicted seq", 10, nil, []uint64{15}, 30, 15, 0, false},
		{"evicted seq splits a span", 20, []span{{3, 9}}, []uint64{5}, 30, 6, 9, true},
		{"before the split", 20, []span{{3, 9}}, []uint64{5}, 30, 3, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRing(tt.liveFrom, 1)
			for _, s := range tt.spans {
				r.addSpan(s.from, s.to)
			}
			for _, s := range tt.uncover {
				r.uncover(s)
			}
			end, ok := r.coveredEnd(tt.p, tt.w)
			if ok != tt.wantOK || ok && end != tt.wantEnd {
				t.Fatalf("coveredEnd(%d): got %d, %v; want %d, %v (spans %v, live from %d)", tt.p, end, ok, tt.wantEnd, tt.wantOK, r.spans, r.liveFrom)
			}
		})
	}
}

func TestStallEndsLiveSpan(t *testing.T) {
	r := testRing(10, 1)
	r.stall = 14
	if end, ok := r.coveredEnd(11, 30); !ok || end != 13 {
		t.Fatalf("stalled at 14: got %d, %v; want 13, true", end, ok)
	}
	r.readTo = 40
	r.stall = 0
	if end, _ := r.coveredEnd(11, 30); end != 40 {
		t.Fatalf("read ahead of the watermark: got %d; want 40", end)
	}
}

func TestInsertOrderAndLate(t *testing.T) {
	r := testRing(1, 1, 5, 3, 9, 7)
	var got []uint64
	for _, f := range r.frames {
		got = append(got, f.Seq)
	}
	if !slices.Equal(got, []uint64{3, 5, 7, 9}) {
		t.Fatalf("frames: got %v; want 3 5 7 9", got)
	}
	if n := r.insert(NewFrame(5, "~all", frame.Meta{}, []byte{1}), 9); n != 0 {
		t.Fatalf("duplicate insert: got %d bytes added; want 0", n)
	}
	// 6 falls where the ring claimed coverage (live span 1..w=9): a late
	// frame.
	r.insert(NewFrame(6, "~all", frame.Meta{}, []byte{1}), 9)
	if r.lateGen != 1 || len(r.late) != 1 || r.late[0].f.Seq != 6 {
		t.Fatalf("late: got gen %d, %d frames; want frame 6 late", r.lateGen, len(r.late))
	}
	// 11, past the watermark, is no late frame.
	r.insert(NewFrame(11, "~all", frame.Meta{}, []byte{1}), 9)
	if r.lateGen != 1 {
		t.Fatalf("frame past the watermark counted late")
	}
}

// TestEvictOrder: entries every member consumed go first, then those the
// furthest member consumed (newest first, keeping what a slow member
// needs next), then the oldest; the newest entry stays.
func TestEvictOrder(t *testing.T) {
	tests := []struct {
		name string
		pos  []uint64 // members' positions
		keep int64
		want []uint64
	}{
		{"consumed by all", []uint64{4, 8}, 4, []uint64{5, 6, 7, 8}},
		{"behind the furthest, newest first", []uint64{2, 8}, 3, []uint64{3, 4, 8}},
		{"then the oldest", []uint64{0}, 2, []uint64{7, 8}},
		{"newest stays", []uint64{8}, 0, []uint64{8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRing(1, 1, 1, 2, 3, 4, 5, 6, 7, 8)
			for _, p := range tt.pos {
				c := &Cursor{subs: make([]cursorSub, 1)}
				c.subs[0].r = r
				c.subs[0].pos.Store(p)
				r.members = append(r.members, c)
			}
			r.evict(tt.keep)
			var got []uint64
			for _, f := range r.frames {
				got = append(got, f.Seq)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("after evict(%d): got %v; want %v", tt.keep, got, tt.want)
			}
			if r.bytes != int64(len(got)) {
				t.Fatalf("bytes: got %d; want %d", r.bytes, len(got))
			}
			// What went is no longer covered; what stayed is.
			for s := uint64(1); s <= 8; s++ {
				_, ok := r.coveredEnd(s, 8)
				if in := slices.Contains(got, s); ok != in {
					t.Errorf("seq %d: covered %v; want %v (spans %v, live from %d)", s, ok, in, r.spans, r.liveFrom)
				}
			}
		})
	}
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"outputs.o.*", "outputs.p.*", false},
		{"outputs.o.*", "outputs.*.~all", true},
		{"outputs.*.c", "outputs.*.~all", false},
		{"outputs.*.c", "outputs.o.*", true},
		{"outputs.o.c", "outputs.o.d", false},
		{"outputs.>", "outputs.o.c", true},
		{"outputs.o", "outputs.o.c", false},
	}
	for _, tt := range tests {
		if got := overlap(tt.a, tt.b); got != tt.want {
			t.Errorf("overlap(%s, %s): got %v; want %v", tt.a, tt.b, got, tt.want)
		}
		if got := overlap(tt.b, tt.a); got != tt.want {
			t.Errorf("overlap(%s, %s): got %v; want %v", tt.b, tt.a, got, tt.want)
		}
	}
	for _, m := range []struct {
		f, s string
		want bool
	}{
		{"outputs.o.*", "outputs.o.c", true},
		{"outputs.o.*", "outputs.p.c", false},
		{"outputs.*.c", "outputs.o.c", true},
		{"outputs.*.c", "outputs.o.c.d", false},
	} {
		if got := matches(m.f, m.s); got != m.want {
			t.Errorf("matches(%s, %s): got %v; want %v", m.f, m.s, got, m.want)
		}
	}
}

func ExampleKind_String() {
	fmt.Println(Send, Gap, Reset)
	// Output: send gap reset
}
