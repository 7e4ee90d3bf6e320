package encode

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestTurboNeedsCGO builds this package with -tags turbo and cgo off: the
// build must fail and say why, not fall back to the pure-Go encoders.
func TestTurboNeedsCGO(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH: %v", err)
	}
	cmd := exec.Command(goCmd, "build", "-tags", "nodynamic,turbo", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("go build -tags turbo with CGO_ENABLED=0 succeeded; want a compile error")
	}
	if !bytes.Contains(out, []byte("theTurboTagNeedsCGOEnabled1")) {
		t.Errorf("go build said %q; want it to name theTurboTagNeedsCGOEnabled1", out)
	}
}
