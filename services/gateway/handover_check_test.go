package gateway

import "testing"

func TestHeldAfterMissed(t *testing.T) {
	fr := func(seq uint64, subject string, prev uint64) item {
		return item{seq: seq, subject: subject, prev: prev}
	}
	tests := []struct {
		name  string
		held  []item
		last  uint64
		gapTo uint64
		want  uint64 // seq of the frame returned; 0 for nil
	}{
		{"nothing held", nil, 8, 0, 0},
		{"predecessor read", []item{fr(10, "a", 5)}, 8, 0, 0},
		{"predecessor is the last read", []item{fr(10, "a", 8)}, 8, 0, 0},
		{"no predecessor", []item{fr(10, "a", 0)}, 8, 0, 0},
		{"predecessor missed", []item{fr(10, "a", 9)}, 8, 0, 10},
		{"predecessor held", []item{fr(9, "a", 4), fr(10, "a", 9)}, 8, 0, 0},
		{"other subject's predecessor missed", []item{fr(9, "a", 4), fr(11, "b", 10)}, 8, 0, 11},
		{"interleaved subjects", []item{fr(9, "a", 4), fr(10, "b", 2), fr(11, "a", 9), fr(12, "b", 10)}, 8, 0, 0},
		{"predecessor reported in a gap", []item{fr(10, "a", 7)}, 5, 7, 0},
		{"predecessor past the gap", []item{fr(10, "a", 8)}, 5, 7, 10},
		{"held frames already read", []item{fr(7, "a", 2), fr(8, "a", 7), fr(10, "a", 8)}, 8, 0, 0},
		{"items the session wrote itself", []item{{seq: 9, text: true}, fr(10, "a", 6)}, 8, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &session{held: tt.held, gapTo: tt.gapTo}
			var got uint64
			if it, missed := s.heldAfterMissed(tt.last); missed {
				got = it.seq
			}
			if got != tt.want {
				t.Errorf("heldAfterMissed(%d) = frame %d; want %d (0: none)", tt.last, got, tt.want)
			}
		})
	}
}
