// Package natstest gives a test a real embedded NATS server with JetStream
// and a connection to it, both closed when the test ends.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/natsembed"
)

// Start runs a server storing in tb.TempDir() and returns a JetStream
// context on a connection to it (js.Conn()). tb.Cleanup closes both.
func Start(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}
