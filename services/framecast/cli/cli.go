// Package cli is the framecast command: `run` starts the development stack
// (embedded NATS, producer API and gateway with the viewer on one port),
// `publish` sends image files to a producer, `tail` watches an output
// through a gateway, `stream ensure` applies the stream's settings as the
// administrative NATS user and `stream verify` checks them.
//
// Every flag can also be set by an environment variable named FRAMECAST_
// and the flag's name in upper case with dashes as underscores, e.g.
// --gateway-url is FRAMECAST_GATEWAY_URL; a flag on the command line wins.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3"
)

// Exit codes of Main.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

const usage = `usage: framecast <command> [flags]

commands:
  run       start NATS, the producer API and the gateway with the live viewer on one port
  publish   send image files to a producer as one batch
  tail      print (and save) the frames of an output as they arrive
  stream    ensure: create or update the stream as the admin NATS user; verify: check it

Run "framecast <command> -h" for a command's flags. Every flag can also be set
by FRAMECAST_<FLAG> in the environment, e.g. FRAMECAST_GATEWAY_URL.
`

// Main runs the command in args (without the program name) and returns the
// process exit code. Results go to stdout, diagnostics to stderr. Long
// running commands stop when ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	var err error
	switch args[0] {
	case "run":
		err = run(ctx, args[1:], stdout, stderr)
	case "publish":
		err = publish(ctx, args[1:], stdout, stderr)
	case "tail":
		err = tail(ctx, args[1:], stdout, stderr)
	case "stream":
		err = streamCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(stderr, "framecast: unknown command %q; allowed: run, publish, tail, stream\n\n%s", args[0], usage)
		return ExitUsage
	}
	var uerr usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &uerr):
		if !uerr.printed {
			fmt.Fprintf(stderr, "framecast %s: %v\n", args[0], err)
		}
		return ExitUsage
	}
	fmt.Fprintf(stderr, "framecast %s: %v\n", args[0], err)
	return ExitFailure
}

// usageError is a bad flag or argument.
type usageError struct {
	err     error
	printed bool // the flag package has printed it with the usage
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{err: fmt.Errorf(format, args...)}
}

// parse reads args and FRAMECAST_* variables into fs. Flag errors are
// printed by fs with its usage.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("FRAMECAST")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		// flag has printed the error and the usage already.
		return usageError{err: err, printed: true}
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
