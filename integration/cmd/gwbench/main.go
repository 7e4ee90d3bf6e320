// Command gwbench measures framecast gateways at scale as separate
// processes, and compares two of them in the same run on the same machine:
// BASE, built from a git commit, and HEAD, the working tree (or another
// commit). For each scenario and each gateway in turn it starts a fresh
// nats-server (JetStream, with its monitoring port), a producer, the
// gateway, and a client-load process (gwbench itself, as "gwbench clients")
// holding the websockets, then prints one table row per gateway and the
// ratio HEAD/BASE.
//
// Scenarios (issue 9's targets; BENCHMARKS.md records the figures):
//
//   - storm: frames stored on one output, then many clients connect at
//     once with since=0; time until each holds them all, and the JetStream
//     API requests the server answered meanwhile (/jsz api.total).
//   - connects: many live-only connects; API requests, time to connect
//     all, and (as "idle") the gateway's RSS per held connection.
//   - saturation: large frames at a rate past what the gateway can fan
//     out; clients closed by the gateway, frames lost or duplicated,
//     nats-server and gateway CPU.
//   - fanout: 64 KiB frames to many sockets; gateway CPU per delivered GB.
//
// Run it from the repository root: go run ./integration/cmd/gwbench -h
// (or make bench-storm).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == clientsRole {
		if err := runClients(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "gwbench clients:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gwbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gwbench:", err)
		os.Exit(1)
	}
}
