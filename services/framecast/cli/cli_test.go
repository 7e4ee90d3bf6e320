package cli

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/framecast/framecast/services/framecast/devstack"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage: framecast <command>"},
		{"unknown command", []string{"push"}, `unknown command "push"; allowed: run, publish, tail, stream`},
		{"publish no output", []string{"publish", "a.png"}, "--output-id: invalid id: output_id is empty"},
		{"publish type", []string{"publish", "--output-id", "o", "--type", "gif", "a.png"}, "allowed: webp, png, jpeg"},
		{"publish quality", []string{"publish", "--output-id", "o", "--quality", "0", "a.png"}, "--quality 0; allowed: 1..100"},
		{"publish url", []string{"publish", "--output-id", "o", "--producer-url", "localhost:8080", "a.png"}, "allowed: an http:// or https:// URL"},
		{"publish no files", []string{"publish", "--output-id", "o"}, "no files; give one or more"},
		{"publish previews", []string{"publish", "--output-id", "o", "--previews", "8", "a.png"}, "--previews 8; allowed: 0 (none) or 16..1024"},
		{"publish long id", []string{"publish", "--output-id", strings.Repeat("x", 25), "a"}, "greater than 24 bytes"},
		{"publish flag", []string{"publish", "--qualty", "3"}, "flag provided but not defined: -qualty"},
		{"tail no output", []string{"tail"}, "--output-id: invalid id: output_id is empty"},
		{"tail since", []string{"tail", "--output-id", "o", "--since", "-1"}, `--since "-1"; allowed: a stream sequence`},
		{"tail since and last", []string{"tail", "--output-id", "o", "--since", "1", "--last", "2"}, "allowed: one of them"},
		{"tail last", []string{"tail", "--output-id", "o", "--last", "-2"}, "--last -2; allowed: a positive number"},
		{"tail epoch without since", []string{"tail", "--output-id", "o", "--epoch", "e1"}, `--epoch "e1" without --since; allowed: --epoch only with the --since sequence`},
		{"tail epoch with last", []string{"tail", "--output-id", "o", "--epoch", "e1", "--last", "3"}, `--epoch "e1" without --since`},
		{"tail last comfy", []string{"tail", "--comfydeploy", "--last", "2"}, "--last does not apply to --comfydeploy"},
		{"tail count", []string{"tail", "--output-id", "o", "--count", "-1"}, "--count -1; allowed"},
		{"tail rendition", []string{"tail", "--output-id", "o", "--rendition", "thumb"}, `--rendition "thumb"; allowed: full, preview, all`},
		{"tail rendition comfy", []string{"tail", "--comfydeploy", "--rendition", "preview"}, "--rendition preview does not apply to --comfydeploy"},
		{"tail url", []string{"tail", "--output-id", "o", "--gateway-url", "tcp://h"}, `scheme "tcp"; allowed: http, https, ws, wss`},
		{"tail empty url", []string{"tail", "--output-id", "o", "--gateway-url", " , "}, "--gateway-url is empty"},
		{"tail args", []string{"tail", "--output-id", "o", "extra"}, `unexpected argument "extra"`},
		{"tail client id", []string{"tail", "--output-id", "o", "--client-id", "a\tb"}, "--client-id: invalid id: client_id contains control character"},
		{"run addr", []string{"run", "--addr", "8080"}, `--addr "8080"; allowed: host:port or :port`},
		{"run nats port", []string{"run", "--nats-port", "70000"}, "--nats-port 70000; allowed: 1..65535, or -1"},
		{"run origins", []string{"run", "--allowed-origins", "ok.example.com,[bad"}, `--allowed-origins: "[bad" is not a host pattern`},
		{"run empty origin", []string{"run", "--allowed-origins", "a.example.com,,b"}, `--allowed-origins: "" is not a host pattern`},
		{"stream no action", []string{"stream"}, "usage: framecast stream <ensure|verify>"},
		{"stream action", []string{"stream", "apply"}, `unknown action "apply"; allowed: ensure, verify`},
		{"stream url", []string{"stream", "ensure", "--nats-url", "http://h:4222"}, "--nats-url"},
		{"stream password alone", []string{"stream", "ensure", "--nats-password", "p"}, "--nats-password without --nats-user"},
		{"stream creds and user", []string{"stream", "ensure", "--nats-creds", "a.creds", "--nats-user", "admin"}, "allowed: one of them"},
		{"stream timeout", []string{"stream", "verify", "--timeout", "0s"}, "--timeout 0s; allowed: a positive duration"},
		{"stream replicas", []string{"stream", "ensure", "--stream-replicas", "7"}, "replicas 7; want 1..5"},
		{"stream args", []string{"stream", "ensure", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := Main(t.Context(), tt.args, &stdout, &stderr); got != ExitUsage {
				t.Fatalf("exit code got %d; want %d (stderr %q)", got, ExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr got %q; want it to contain %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestParseFromEnv(t *testing.T) {
	t.Setenv("FRAMECAST_GATEWAY_URL", "http://a:1, http://b:2")
	t.Setenv("FRAMECAST_OUTPUT_ID", "env-out")
	t.Setenv("FRAMECAST_TOKEN", "tok")
	c, err := parseTail([]string{"--since", "5"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.GatewayURLs, " "); got != "http://a:1 http://b:2" {
		t.Errorf("gateway urls got %q; want http://a:1 http://b:2", got)
	}
	if c.OutputID != "env-out" || c.Token != "tok" || c.Since == nil || *c.Since != 5 {
		t.Errorf("got %+v; want output env-out, token tok, since 5", c)
	}
	c2, err := parseTail([]string{"--output-id", "flag-out"}, os.Stderr)
	if err != nil || c2.OutputID != "flag-out" {
		t.Errorf("got %q, %v; want the flag to win over the environment", c2.OutputID, err)
	}
}

func TestImageFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.png", "a.JPG", "c.webp", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "sub.png"), 0o755)
	got, err := imageFiles([]string{filepath.Join(dir, "notes.txt"), dir})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"notes.txt", "a.JPG", "b.png", "c.webp"}
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %q; want %q", got, want)
	}
	empty := t.TempDir()
	if _, err := imageFiles([]string{empty}); err == nil || !strings.Contains(err.Error(), "allowed: .png, .jpg, .jpeg, .webp") {
		t.Fatalf("got %v; want an error naming the allowed extensions", err)
	}
}

// startStack runs the development stack on free ports.
func startStack(t *testing.T) string {
	t.Helper()
	st, err := devstack.Start(t.Context(), devstack.Config{Addr: "127.0.0.1:0", NATSPort: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return "http://" + st.Addr().String()
}

func writeImages(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	img := image.NewRGBA(image.Rect(0, 0, 8, 6))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	var p, j bytes.Buffer
	if err := png.Encode(&p, img); err != nil {
		t.Fatal(err)
	}
	gray := image.NewGray(image.Rect(0, 0, 5, 4))
	gray.Set(1, 1, color.Gray{200})
	if err := jpeg.Encode(&j, gray, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.png"), p.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "b.jpg"), j.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "readme.txt"), []byte("not an image"), 0o644)
	return dir
}

func runMain(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if got := Main(t.Context(), args, &stdout, &stderr); got != want {
		t.Fatalf("framecast %s: exit code got %d; want %d\nstdout %s\nstderr %s", strings.Join(args, " "), got, want, &stdout, &stderr)
	}
	return stdout.String(), stderr.String()
}

func TestPublishAndTail(t *testing.T) {
	url := startStack(t)
	dir := writeImages(t)

	out, _ := runMain(t, ExitOK, "publish", "--producer-url", url, "--output-id", "demo", "--client-id", "c1",
		"--type", "png", "--idempotency-key", "k1", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"seq=1 index=0 type=image/png size=8x6 bytes=",
		"seq=2 index=1 type=image/png size=5x4 bytes=",
	}
	if len(lines) != len(want) {
		t.Fatalf("publish printed %q; want %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("publish line %d got %q; want prefix %q", i, lines[i], w)
		}
	}
	if !strings.HasSuffix(lines[1], "b.jpg") {
		t.Errorf("publish line 1 got %q; want it to name b.jpg", lines[1])
	}

	// The same idempotency key publishes nothing twice.
	again, _ := runMain(t, ExitOK, "publish", "--producer-url", url, "--output-id", "demo", "--client-id", "c1",
		"--type", "png", "--idempotency-key", "k1", dir)
	if !strings.HasPrefix(again, "seq=1 ") {
		t.Errorf("retry printed %q; want the original seq=1", again)
	}

	saved := t.TempDir()
	out, _ = runMain(t, ExitOK, "tail", "--gateway-url", url, "--output-id", "demo", "--client-id", "c1",
		"--since", "0", "--count", "2", "--out", saved)
	for _, w := range []string{
		"hello: gateway framecast-dev, output demo, client c1, starting after seq 0",
		"seq=1 output=demo client=c1 type=png size=8x6 bytes=",
		"seq=2 output=demo client=c1 type=png size=5x4 bytes=",
		"saved=" + filepath.Join(saved, "2.png"),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("tail printed %q; want a line with %q", out, w)
		}
	}
	b, err := os.ReadFile(filepath.Join(saved, "1.png"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width != 8 || cfg.Height != 6 {
		t.Errorf("saved 1.png decodes to %+v, %v; want an 8x6 png", cfg, err)
	}

	out, _ = runMain(t, ExitOK, "tail", "--gateway-url", url, "--comfydeploy", "--output-id", "demo", "--client-id", "c1",
		"--since", "1", "--count", "1", "--out", saved)
	if !strings.Contains(out, "status: connected as clientId c1") || !strings.Contains(out, "seq=0 output=demo client=- type=png bytes=") ||
		!strings.Contains(out, "saved="+filepath.Join(saved, "1.png")) {
		t.Errorf("comfydeploy tail printed %q; want status, one png frame saved as 1.png", out)
	}
}

func TestPublishErrors(t *testing.T) {
	url := startStack(t)
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.png")
	os.WriteFile(broken, []byte("\x89PNG\r\n\x1a\n truncated"), 0o644)
	_, stderr := runMain(t, ExitFailure, "publish", "--producer-url", url, "--output-id", "demo", broken)
	if !strings.Contains(stderr, "producer answered 400 Bad Request: invalid_image") {
		t.Errorf("stderr got %q; want the API's invalid_image error", stderr)
	}

	text := filepath.Join(dir, "a.png")
	os.WriteFile(text, []byte("hello"), 0o644)
	_, stderr = runMain(t, ExitFailure, "publish", "--producer-url", url, "--output-id", "demo", text)
	if !strings.Contains(stderr, "is text/plain; charset=utf-8; allowed: png, jpeg, webp images") {
		t.Errorf("stderr got %q; want a local refusal of the text file", stderr)
	}

	_, stderr = runMain(t, ExitFailure, "publish", "--producer-url", url, "--output-id", "demo", filepath.Join(dir, "missing.png"))
	if !strings.Contains(stderr, "no such file") {
		t.Errorf("stderr got %q; want no such file", stderr)
	}
}
