// Package integration holds framecast's end-to-end and fault tests: real
// producer, gateway and nats-server processes, real signals and real
// websocket clients, with exact accounting of every frame (see packages
// topo and ledger). Run them with `go test -race ./integration/...` from
// the workspace root, or `make test-integration`.
package integration
