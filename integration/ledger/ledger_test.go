package ledger_test

import (
	"reflect"
	"testing"

	"github.com/framecast/framecast/integration/ledger"
)

// TestEpochs: sequences are compared within one stream epoch; a reset
// moves a client into another.
func TestEpochs(t *testing.T) {
	frame := func(id, seq uint64, epoch string) ledger.Frame {
		return ledger.Frame{ID: id, Seq: seq, OutputID: "o", Epoch: epoch}
	}
	a1, a2 := frame(1, 1, "A"), frame(2, 2, "A")
	b1, b2 := frame(3, 1, "B"), frame(4, 2, "B")
	seen := func(f ledger.Frame) ledger.Frame { f.Epoch = ""; return f } // as a client sees it
	tests := []struct {
		name  string
		acked []ledger.Frame
		run   func(c *ledger.Client)
		want  ledger.Report
	}{
		{
			name:  "reset starts the new epoch's order",
			acked: []ledger.Frame{a1, a2, b1, b2},
			run: func(c *ledger.Client) {
				c.Hello("A")
				c.Saw(seen(a1))
				c.Saw(seen(a2))
				c.Reset("B", 0)
				c.Saw(seen(b1))
				c.Saw(seen(b2))
			},
			want: ledger.Report{Expected: 4, Delivered: 4},
		},
		{
			name:  "a new epoch's frame without a reset is out of order",
			acked: []ledger.Frame{a1, a2, b1},
			run: func(c *ledger.Client) {
				c.Hello("A")
				c.Saw(seen(a1))
				c.Saw(seen(a2))
				c.Saw(seen(b1)) // seq 1 after 2, and in epoch A
			},
			want: ledger.Report{Expected: 3, Delivered: 3, OutOfOrder: 2},
		},
		{
			name:  "a gap covers its own epoch only",
			acked: []ledger.Frame{a1, a2, b1, b2},
			run: func(c *ledger.Client) {
				c.Hello("A")
				c.Gap(1, 2)
				c.Reset("B", 0)
			},
			want: ledger.Report{Expected: 4, Gapped: 2, Lost: 2},
		},
		{
			name:  "a reset's since counts as reported",
			acked: []ledger.Frame{b1, b2},
			run: func(c *ledger.Client) {
				c.Hello("A")
				c.Reset("B", 1)
				c.Saw(seen(b2))
			},
			want: ledger.Report{Expected: 2, Delivered: 1, Gapped: 1},
		},
		{
			name:  "untracked epochs match any",
			acked: []ledger.Frame{frame(1, 1, ""), frame(2, 2, "")},
			run: func(c *ledger.Client) {
				c.Hello("X")
				c.Gap(1, 1)
				c.Saw(seen(frame(2, 2, "")))
			},
			want: ledger.Report{Expected: 2, Delivered: 1, Gapped: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ledger.New(tc.name)
			for _, f := range tc.acked {
				l.Ack(f)
			}
			tc.run(l.Client("c", func(f ledger.Frame) bool { return f.OutputID == "o" }))
			got := l.Report()
			want := tc.want
			want.Scenario, want.Clients, want.Acked = tc.name, 1, len(tc.acked)
			if got.Details = nil; !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v; want %+v", got, want)
			}
		})
	}
}
