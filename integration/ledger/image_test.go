package ledger_test

import (
	"testing"

	"github.com/framecast/framecast/integration/ledger"
)

func TestIDRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		id   uint64
		w, h int
	}{
		{"smallest", 1, ledger.MinWidth, 1},
		{"large id", 1<<63 + 12345, 7, 3},
		{"noisy", 42, 64, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ledger.ID(ledger.PNG(tc.id, tc.w, tc.h))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.id {
				t.Errorf("got id %d; want %d", got, tc.id)
			}
		})
	}
}

func TestIDRefusesForeignImage(t *testing.T) {
	png := ledger.PNG(7, 8, 1)
	if _, err := ledger.ID(png[:len(png)/2]); err == nil {
		t.Error("truncated PNG: got no error; want one")
	}
}
