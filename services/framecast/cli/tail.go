package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/subject"
	"github.com/framecast/framecast/shared/wire"
)

// tailConfig is what `framecast tail` was asked to do.
type tailConfig struct {
	GatewayURLs []string
	OutputID    string
	ClientID    string
	Since       *uint64
	Epoch       string
	Last        int
	Token       string
	Out         string
	ComfyDeploy bool
	Count       int
	Rendition   string
}

func parseTail(args []string, stderr io.Writer) (tailConfig, error) {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	var c tailConfig
	var urls, since string
	fs.StringVar(&urls, "gateway-url", "http://localhost:8080", "gateway base URL; a comma-separated list fails over round robin")
	fs.StringVar(&c.OutputID, "output-id", "", "output id to watch (required on the native endpoint; with --comfydeploy it filters)")
	fs.StringVar(&c.ClientID, "client-id", "", "client id whose targeted frames to receive besides broadcast ones")
	fs.StringVar(&since, "since", "", "start after this stream sequence (replays newer frames)")
	fs.StringVar(&c.Epoch, "epoch", "", "the stream epoch --since was taken from (printed with hello and reset); needs --since")
	fs.IntVar(&c.Last, "last", 0, "start with the last N frames")
	fs.StringVar(&c.Token, "token", "", "bearer token (a JWT) for the gateway")
	fs.StringVar(&c.Out, "out", "", "folder to save images to as <seq>.<ext> (after a reset, in a folder epoch-<epoch>; comfydeploy: <n>.<ext>)")
	fs.BoolVar(&c.ComfyDeploy, "comfydeploy", false, "use the ComfyDeploy-compatible endpoint /comfyui-deploy/ws (no sequences: no resume)")
	fs.IntVar(&c.Count, "count", 0, "exit after N frames; 0 runs until interrupted")
	fs.StringVar(&c.Rendition, "rendition", "full", "which images: full (as published), preview (the previews of publishes with previews=N) or all (each preview before its image)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: framecast tail --output-id ID [flags]\n\n"+
			"Prints one line per frame, per control message (hello, gap, live, reset)\n"+
			"and per ComfyUI event;\n"+
			"reconnects with backoff and resumes with since and epoch.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected argument %q; tail takes flags only", fs.Arg(0))
	}
	c.GatewayURLs = splitList(urls)
	if len(c.GatewayURLs) == 0 {
		return c, usagef("--gateway-url is empty; allowed: one or more comma-separated URLs such as http://localhost:8080")
	}
	if !c.ComfyDeploy || c.OutputID != "" {
		if err := subject.ValidateOutputID(c.OutputID); err != nil {
			return c, usagef("--output-id: %v", err)
		}
	}
	if err := subject.ValidateClientID(c.ClientID); err != nil {
		return c, usagef("--client-id: %v", err)
	}
	if since != "" {
		n, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			return c, usagef("--since %q; allowed: a stream sequence, 0 or more", since)
		}
		c.Since = &n
	}
	switch {
	case c.Epoch != "" && c.Since == nil:
		return c, usagef("--epoch %q without --since; allowed: --epoch only with the --since sequence it belongs to", c.Epoch)
	case c.Last < 0:
		return c, usagef("--last %d; allowed: a positive number of frames", c.Last)
	case c.Last > 0 && c.Since != nil:
		return c, usagef("--since and --last are both set; allowed: one of them")
	case c.Last > 0 && c.ComfyDeploy:
		return c, usagef("--last does not apply to --comfydeploy; allowed there: --since")
	case c.Count < 0:
		return c, usagef("--count %d; allowed: 0 (until interrupted) or a positive number of frames", c.Count)
	case c.Rendition != "full" && c.Rendition != "preview" && c.Rendition != "all":
		return c, usagef("--rendition %q; allowed: full, preview, all", c.Rendition)
	case c.Rendition != "full" && c.ComfyDeploy:
		return c, usagef("--rendition %s does not apply to --comfydeploy, which sends full images only", c.Rendition)
	}
	return c, nil
}

// errCountReached ends Run once --count frames arrived.
var errCountReached = errors.New("count reached")

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseTail(args, stderr)
	if err != nil {
		return err
	}
	if c.Out != "" {
		if err := os.MkdirAll(c.Out, 0o755); err != nil {
			return err
		}
	}
	cfg := client.StreamConfig{
		Config: client.Config{
			OutputID: c.OutputID, ClientID: c.ClientID, Token: c.Token,
			Since: c.Since, Epoch: c.Epoch, Last: c.Last, ComfyDeploy: c.ComfyDeploy,
			Rendition: c.Rendition,
		},
		URLs: c.GatewayURLs,
		OnDisconnect: func(url string, err error, wait time.Duration) {
			fmt.Fprintf(stderr, "disconnected from %s: %v; reconnecting in %v\n", url, err, wait.Round(time.Millisecond))
		},
	}
	s, err := client.NewStream(cfg)
	if err != nil {
		return usagef("%v", err)
	}
	n := 0
	// Images are saved in out. Sequences start over after a reset, so once
	// out holds a frame, a reset moves saving to a folder of the new epoch
	// and no file of another epoch is overwritten.
	out, saved := c.Out, false
	err = s.Run(ctx, func(ctx context.Context, m client.Message) error {
		switch m := m.(type) {
		case *client.Frame:
			n++
			if err := printFrame(stdout, m, n, out); err != nil {
				return err
			}
			saved = out != ""
			if c.Count > 0 && n >= c.Count {
				return errCountReached
			}
		case *client.Control:
			printControl(stdout, m)
			if m.Type == wire.TypeReset && saved {
				out, saved = filepath.Join(c.Out, epochDir(m.Epoch)), false
				if err := os.MkdirAll(out, 0o755); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "saving to %s\n", out)
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errCountReached):
		return nil
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Interrupted: a normal way to end tail.
		return nil
	}
	return err
}

func printFrame(w io.Writer, f *client.Frame, n int, out string) error {
	h := f.Header
	line := fmt.Sprintf("seq=%d output=%s client=%s type=%s", f.Seq, f.OutputID, orDash(h.ClientID), f.Format)
	if h.Width > 0 {
		line += fmt.Sprintf(" size=%dx%d", h.Width, h.Height)
	}
	line += fmt.Sprintf(" bytes=%d", len(f.Image))
	if h.TS > 0 {
		line += fmt.Sprintf(" latency=%v", time.Since(time.UnixMilli(h.TS)).Round(time.Millisecond))
	}
	if h.BatchSize > 0 {
		line += fmt.Sprintf(" batch=%d/%d", h.BatchIndex+1, h.BatchSize)
	}
	if h.Rendition != "" {
		line += " rendition=" + h.Rendition
	}
	if out != "" {
		id := f.Seq
		if id == 0 {
			id = uint64(n)
		}
		name := filepath.Join(out, strconv.FormatUint(id, 10)+"."+f.Format.String())
		if err := os.WriteFile(name, f.Image, 0o644); err != nil {
			return err
		}
		line += " saved=" + name
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func printControl(w io.Writer, c *client.Control) {
	switch c.Type {
	case wire.TypeHello:
		since := "live"
		if c.Since != nil {
			since = "after seq " + strconv.FormatUint(*c.Since, 10)
		}
		epoch := ""
		if c.Epoch != "" {
			epoch = ", epoch " + c.Epoch
		}
		fmt.Fprintf(w, "hello: gateway %s, output %s, client %s, starting %s%s\n", orDash(c.Gateway), orDash(c.OutputID), orDash(c.ClientID), since, epoch)
	case wire.TypeReset:
		// Conn.Next refuses a reset without since.
		fmt.Fprintf(w, "reset: epoch %s, starting after seq %d (sequences start over): %s\n", orDash(c.Epoch), *c.Since, orDash(c.Message))
	case wire.TypeGap:
		fmt.Fprintf(w, "gap: frames %d..%d are past the stream's window and lost\n", c.From, c.To)
	case wire.TypeLive:
		seq := uint64(0)
		if c.Seq != nil {
			seq = *c.Seq
		}
		fmt.Fprintf(w, "live: replay ended at seq %d\n", seq)
	case wire.TypeError:
		fmt.Fprintf(w, "error from gateway: %s\n", c.Message)
	case client.TypeStatus:
		fmt.Fprintf(w, "status: connected as clientId %s\n", c.SID)
	case wire.TypeEvent:
		// ComfyDeploy events carry no sequence: seq 0, as for its frames.
		var seq uint64
		if c.Seq != nil {
			seq = *c.Seq
		}
		fmt.Fprintf(w, "event %s seq %d: %s\n", c.Event, seq, oneLine(c.Data))
	default:
		fmt.Fprintf(w, "%s message\n", c.Type)
	}
}

// epochDir names the folder for the images of an epoch: "epoch-" and the
// epoch, with every byte but [A-Za-z0-9_-] escaped as %XX, so that no epoch
// names a path outside --out; a long one "epoch.sha256-" and the start of
// its SHA-256 instead (no escaped name has a dot).
func epochDir(epoch string) string {
	const maxName = 100
	var b []byte
	for i := 0; i < len(epoch); i++ {
		switch c := epoch[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			b = append(b, c)
		default:
			b = fmt.Appendf(b, "%%%02X", c)
		}
	}
	if len(b) > maxName {
		sum := sha256.Sum256([]byte(epoch))
		return "epoch.sha256-" + hex.EncodeToString(sum[:16])
	}
	return "epoch-" + string(b)
}

// oneLine is JSON text b without its insignificant white space, so that an
// event's data prints on its line; text that is not JSON is quoted.
func oneLine(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return strconv.Quote(string(b))
	}
	return buf.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
