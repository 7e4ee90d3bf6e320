package integration_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/framecast/framecast/integration/topo"
)

// bins are the producer, gateway, nats-server and framecast binaries,
// built once for the whole suite.
var bins topo.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "framecast-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = topo.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
