package main

import (
	"strings"
	"testing"
)

// TestRunRefusesBadFlags: flags that would switch a protection off, or
// that do not parse, stop the producer before it starts, naming the flag.
func TestRunRefusesBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--read-timeout=0"}, "--read-timeout 0s"},
		{[]string{"--idle-timeout=-1s"}, "--idle-timeout -1s"},
		{[]string{"--log-level=loud"}, `--log-level "loud"`},
	} {
		err := run(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v; want an error naming %s", tt.args, err, tt.want)
		}
	}
}
