package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/framecast/framecast/services/framecast/devstack"
)

// shutdownTimeout bounds the graceful part of run's shutdown.
const shutdownTimeout = 15 * time.Second

func parseRun(args []string, stderr io.Writer) (devstack.Config, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c devstack.Config
	fs.StringVar(&c.Addr, "addr", devstack.DefaultAddr, "HTTP listen address of the producer API, the gateway and the viewer")
	fs.IntVar(&c.NATSPort, "nats-port", devstack.DefaultNATSPort, "client port of the embedded NATS server on 127.0.0.1; -1 picks a free one")
	fs.StringVar(&c.StoreDir, "store-dir", devstack.DefaultStoreDir(), "JetStream storage folder (the replay window survives restarts)")
	fs.BoolVar(&c.NATSLogs, "nats-logs", false, "print the NATS server's log")
	origins := fs.String("allowed-origins", "local", "browser origins allowed besides the stack's own: \"local\" (any localhost, 127.0.0.1 or [::1] origin, any port), \"none\", or comma-separated host patterns such as app.example.com,*.example.com,localhost:3000")
	c.Stream.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: framecast run [flags]\n\n"+
			"Starts embedded NATS with JetStream, the producer API and the gateway with the\n"+
			"live viewer on one port. Anonymous access is on: for development only.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected argument %q; run takes flags only", fs.Arg(0))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, usagef("--addr %q; allowed: host:port or :port, e.g. :8080", c.Addr)
	}
	if c.NATSPort < -1 || c.NATSPort == 0 || c.NATSPort > 65535 {
		return c, usagef("--nats-port %d; allowed: 1..65535, or -1 for a free port", c.NATSPort)
	}
	if c.StoreDir == "" {
		return c, usagef("--store-dir is empty; allowed: a folder path")
	}
	switch *origins {
	case "local":
	case "none":
		c.AllowedOrigins = []string{}
	default:
		for _, p := range strings.Split(*origins, ",") {
			p = strings.TrimSpace(p)
			if _, err := path.Match(p, ""); err != nil || p == "" {
				return c, usagef("--allowed-origins: %q is not a host pattern; allowed: local, none, or host patterns such as app.example.com,*.example.com,localhost:3000", p)
			}
			c.AllowedOrigins = append(c.AllowedOrigins, p)
		}
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRun(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Logger = log
	st, err := devstack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	log.Warn("ANONYMOUS ACCESS IS ON: anyone who reaches this port can publish and watch every output; for development only",
		"addr", st.Addr().String())
	printBanner(stdout, st)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-st.Done():
	}
	log.Info("shutting down: draining gateway sockets, closing the producer, stopping NATS")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = st.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("serve: %w", serveErr), err)
	}
	return err
}

func printBanner(w io.Writer, st *devstack.Stack) {
	host, port := "localhost", "8080"
	if a, ok := st.Addr().(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
		if !a.IP.IsUnspecified() {
			host = a.IP.String()
		}
	}
	base := "http://" + net.JoinHostPort(host, port)
	ws := "ws://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, `framecast development stack is up
  viewer         %[1]s/
  producer API   POST %[1]s/v1/outputs/{output_id}/images
                 POST %[1]s/v1/events?client_id=me
  websocket      %[2]s/v1/ws?output_id=demo
  comfydeploy    %[2]s/comfyui-deploy/ws?clientId=me
  health         %[1]s/healthz  %[1]s/readyz  %[1]s/metrics
  NATS           %[3]s

try it:
  curl -X POST '%[1]s/v1/outputs/demo/images?width=64&height=64&channels=3&dtype=uint8&file_type=png' \
    -H 'Content-Type: application/octet-stream' --data-binary @<(head -c 12288 /dev/urandom)
  framecast tail --gateway-url %[1]s --output-id demo
  framecast publish --producer-url %[1]s --output-id demo ./images
`, base, ws, st.NATSURL())
}
