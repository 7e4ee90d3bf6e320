package main

import (
	"strings"
	"testing"
)

// TestGCPercentRefused: a negative --gc-percent is refused with what is
// allowed, before the gateway starts anything.
func TestGCPercentRefused(t *testing.T) {
	for _, v := range []string{"-1", "-50"} {
		err := run([]string{"--gc-percent", v})
		if err == nil || !strings.Contains(err.Error(), "--gc-percent "+v+": want 0 (Go's GOGC) or a positive percentage") {
			t.Errorf("--gc-percent %s: got %v; want a refusal naming what is allowed", v, err)
		}
	}
	if err := run([]string{"--gc-percent", "lots"}); err == nil || !strings.Contains(err.Error(), "gc-percent") {
		t.Errorf("--gc-percent lots: got %v; want the flag's parse error", err)
	}
}

// TestCopyFramesRefused: --copy-frames takes a boolean, and anything else
// is refused with the flag's name.
func TestCopyFramesRefused(t *testing.T) {
	for _, v := range []string{"--copy-frames=maybe", "--copy-frames=2"} {
		if err := run([]string{v}); err == nil || !strings.Contains(err.Error(), "copy-frames") {
			t.Errorf("%s: got %v; want the flag's parse error", v, err)
		}
	}
}
