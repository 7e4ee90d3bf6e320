// Package topo builds the fault suite's topologies out of real processes:
// NATS servers (one, or a cluster of three on loopback), producers and
// gateways started from binaries built by the test, and a TCP proxy the
// test can cut. Every process runs in its own process group, logs to a
// per-test file that is printed when the test fails, and is killed at test
// cleanup.
package topo

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Binaries are the programs a topology runs.
type Binaries struct {
	Producer string
	Gateway  string
	NATS     string
	// Framecast is the framecast command (stream ensure); Build makes it.
	Framecast string
}

// Build compiles the producer, the gateway, nats-server and the framecast
// command into dir. The binaries are built without -race: they are the
// system under test, not the test. It runs go build at the workspace root
// found above the current directory.
func Build(dir string) (Binaries, error) {
	b := Binaries{
		Producer:  filepath.Join(dir, "producer"),
		Gateway:   filepath.Join(dir, "gateway"),
		NATS:      filepath.Join(dir, "nats-server"),
		Framecast: filepath.Join(dir, "framecast"),
	}
	pkgs := []struct{ out, pkg string }{
		{b.Producer, "./services/producer/cmd/producer"},
		{b.Gateway, "./services/gateway/cmd/gateway"},
		{b.NATS, natsServerPkg},
		{b.Framecast, "./services/framecast/cmd/framecast"},
	}
	for _, p := range pkgs {
		if err := build(p.out, p.pkg); err != nil {
			return Binaries{}, err
		}
	}
	return b, nil
}

// BuildNATS compiles only nats-server into dir.
func BuildNATS(dir string) (Binaries, error) {
	b := Binaries{NATS: filepath.Join(dir, "nats-server")}
	return b, build(b.NATS, natsServerPkg)
}

const natsServerPkg = "github.com/nats-io/nats-server/v2"

func build(out, pkg string) error {
	root, err := WorkspaceRoot()
	if err != nil {
		return err
	}
	// Static like the release binaries: nodynamic keeps the image
	// encoders from loading libc at run time.
	cmd := exec.Command("go", "build", "-tags", "nodynamic", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// WorkspaceRoot is the nearest directory at or above the working directory
// that holds go.work.
func WorkspaceRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago. All n are held open together so they differ.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Env is one test's topology: it owns every process it starts and kills
// them all at cleanup, printing their logs if the test failed.
type Env struct {
	T    testing.TB
	Bins Binaries
	// Dir holds the logs and the NATS stores. It is kept (and named in the
	// failure output) when the test fails.
	Dir string

	procs procSet
}

// NewEnv returns an Env for t running bins.
func NewEnv(t testing.TB, bins Binaries) *Env {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", "framecast-"+name+"-*")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, Bins: bins, Dir: dir}
	t.Cleanup(e.cleanup)
	return e
}

func (e *Env) cleanup() {
	procs := e.procs.all()
	for _, p := range procs {
		p.Kill()
	}
	if !e.T.Failed() {
		os.RemoveAll(e.Dir)
		return
	}
	for _, p := range procs {
		e.T.Logf("---- log of %s (%s):\n%s", p.Name, p.Log, tail(p.Log, 150))
	}
	e.T.Logf("logs and stores kept in %s", e.Dir)
}

// Start runs bin as a process named name owned by e; its output goes to
// <Dir>/<name>.log (appended across restarts).
func (e *Env) Start(name, bin string, env []string, args ...string) *Proc {
	e.T.Helper()
	p, err := StartProc(name, filepath.Join(e.Dir, name+".log"), bin, env, args...)
	if err != nil {
		e.T.Fatal(err)
	}
	e.procs.add(p)
	return p
}

// Ports returns n free loopback ports or fails the test.
func (e *Env) Ports(n int) []int {
	e.T.Helper()
	p, err := FreePorts(n)
	if err != nil {
		e.T.Fatal(err)
	}
	return p
}
