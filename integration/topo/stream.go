package topo

import (
	"context"
	"flag"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/stream"
)

// EnsureStream is a deployment's ensure step (framecast stream ensure):
// it creates or updates the stream and its bucket to the settings that
// flags (the services' --stream-* flags, e.g. --stream-replicas=3) give,
// retrying for up to 60s while the cluster elects its leaders. It connects
// with the test's credentials, or with opts (nats.UserInfo of an
// administrative user): the services only verify the stream.
func (n *NATS) EnsureStream(flags []string, opts ...nats.Option) {
	n.env.T.Helper()
	var c stream.Config
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse(flags); err != nil {
		n.env.T.Fatalf("stream flags %q: %v", flags, err)
	}
	nc := n.Connect(opts...)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		n.env.T.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = stream.Ensure(rctx, js, c)
		rcancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			n.env.T.Fatalf("ensure stream %q: %v", flags, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
