package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/natsurl"
	"github.com/framecast/framecast/shared/stream"
)

// streamConfig is what `framecast stream ensure|verify` was asked to do.
type streamConfig struct {
	Action   string // ensure or verify
	NATSURL  string
	User     string
	Password string
	Creds    string
	Timeout  time.Duration
	Stream   stream.Config
}

const streamUsage = `usage: framecast stream <ensure|verify> [flags]

  ensure   create the stream and its large-frame bucket, or update them to the
           --stream-* flags; run it once per deployment (and per change) as the
           administrative NATS user, before the producer and the gateways
  verify   check them against the flags without changing anything; exit 1 when
           one is missing or differs, naming each setting (field, want, have)

The producer and the gateways only verify the stream, with the same --stream-*
flags, and are not ready while it is missing or differs.
`

func parseStream(args []string, stderr io.Writer) (streamConfig, error) {
	var c streamConfig
	if len(args) == 0 || (args[0] != "ensure" && args[0] != "verify") {
		fmt.Fprint(stderr, streamUsage)
		if len(args) == 0 {
			return c, usageError{err: errors.New("no action"), printed: true}
		}
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
			return c, flag.ErrHelp
		}
		return c, usagef("unknown action %q; allowed: ensure, verify", args[0])
	}
	c.Action = args[0]
	fs := flag.NewFlagSet("stream "+c.Action, flag.ContinueOnError)
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS URL, comma-separated for a cluster; may hold user:password")
	fs.StringVar(&c.User, "nats-user", "", "NATS user (the admin user of deploy/nats/accounts.conf for ensure)")
	fs.StringVar(&c.Password, "nats-password", "", "NATS password of --nats-user; better set by FRAMECAST_NATS_PASSWORD")
	fs.StringVar(&c.Creds, "nats-creds", "", "NATS credentials file (JWT and seed) instead of a user and password")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Minute, "how long to keep trying while NATS or JetStream is not up yet")
	c.Stream.Flags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), streamUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args[1:], stderr); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected argument %q; stream %s takes flags only", fs.Arg(0), c.Action)
	}
	if err := natsurl.Validate(c.NATSURL); err != nil {
		return c, usagef("--nats-url: %v", err)
	}
	if c.Password != "" && c.User == "" {
		return c, usagef("--nats-password without --nats-user; allowed: both, or credentials in --nats-url")
	}
	if c.Creds != "" && c.User != "" {
		return c, usagef("--nats-creds and --nats-user together; allowed: one of them")
	}
	if c.Timeout <= 0 {
		return c, usagef("--timeout %v; allowed: a positive duration such as 2m", c.Timeout)
	}
	if _, err := c.Stream.WithDefaults(); err != nil {
		return c, usagef("%v", err)
	}
	return c, nil
}

// errRefused is NATS refusing a request for lack of permission.
var errRefused = errors.New("refused by NATS")

func streamCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseStream(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// A request NATS refuses gets no reply: the refusal arrives as an
	// asynchronous error, which cuts the request short and ends the
	// retries.
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	var mu sync.Mutex
	var refused error
	opts := []nats.Option{
		nats.Name("framecast stream " + c.Action),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				mu.Lock()
				refused = err
				mu.Unlock()
				refuse(err)
			}
		}),
	}
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	nc, err := nats.Connect(c.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	wasRefused := func() error {
		mu.Lock()
		defer mu.Unlock()
		if refused != nil {
			return fmt.Errorf("%w: %v; ensure needs a NATS user allowed to create and update both streams (the admin user of deploy/nats/accounts.conf)", errRefused, refused)
		}
		return nil
	}
	wait := 200 * time.Millisecond
	for {
		err := streamOnce(ctx, js, c, stdout)
		var verr *stream.VerifyError
		switch {
		case err == nil, errors.As(err, &verr), errors.Is(err, stream.ErrInvalidConfig):
			return err
		}
		if rerr := wasRefused(); rerr != nil {
			return rerr
		}
		if !nc.IsConnected() {
			err = fmt.Errorf("no NATS server of --nats-url answers yet (%v): %w", nc.Status(), err)
		}
		fmt.Fprintf(stderr, "framecast stream %s: %v; trying again in %v\n", c.Action, err, wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after --timeout %v: %w", c.Timeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// streamOnce verifies the stream and, for ensure, applies what differs;
// it prints what it found and did.
func streamOnce(ctx context.Context, js jetstream.JetStream, c streamConfig, stdout io.Writer) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := stream.Verify(rctx, js, c.Stream)
	var verr *stream.VerifyError
	if c.Action == "verify" || (err != nil && !errors.As(err, &verr)) {
		if err == nil {
			printMatch(stdout, c.Stream)
		}
		return err
	}
	if err == nil {
		fmt.Fprintln(stdout, "unchanged: the settings were already applied")
		printMatch(stdout, c.Stream)
		return nil
	}
	if _, err := stream.Ensure(rctx, js, c.Stream); err != nil {
		return err
	}
	for _, m := range verr.Missing {
		fmt.Fprintf(stdout, "created %s\n", m)
	}
	for _, d := range verr.Differences {
		fmt.Fprintf(stdout, "updated %s %s: %s -> %s\n", d.Stream, d.Field, d.Have, d.Want)
	}
	if _, err := stream.Verify(rctx, js, c.Stream); err != nil {
		return fmt.Errorf("after ensure: %w", err)
	}
	printMatch(stdout, c.Stream)
	return nil
}

func printMatch(w io.Writer, c stream.Config) {
	c, _ = c.WithDefaults()
	storage := "file"
	if c.Memory {
		storage = "memory"
	}
	fmt.Fprintf(w, "stream %s and bucket %s match: max_age %v, max_bytes %d, duplicate_window %v, num_replicas %d, storage %s, bucket max_bytes %d\n",
		c.Name, c.Bucket, c.MaxAge, c.MaxBytes, c.Duplicates, c.Replicas, storage, c.BucketMaxBytes)
}
