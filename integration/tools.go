//go:build tools

package integration

// nats-server is built by the tests (topo.Build) from this module's
// requirements.
import _ "github.com/nats-io/nats-server/v2"
