package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// TestTailEpochAndReset runs tail against a scripted websocket server: it
// resumes with --since and --epoch, prints the hello's epoch and a reset,
// and saves the frames after the reset beside, not over, those before it.
func TestTailEpochAndReset(t *testing.T) {
	queries := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer ws.CloseNow()
		for _, m := range [][]byte{
			wire.EncodeControl(wire.Control{Type: wire.TypeHello, Gateway: "gw", OutputID: "demo", Since: new(uint64(5)), Epoch: "e1"}),
			nativeFrame(6, "six"),
			wire.EncodeControl(wire.Control{Type: wire.TypeReset, Epoch: "e/2", Since: new(uint64(0)), Message: "stream recreated"}),
			nativeFrame(1, "one"),
		} {
			typ := websocket.MessageBinary
			if m[0] == '{' {
				typ = websocket.MessageText
			}
			if err := ws.Write(r.Context(), typ, m); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
		ws.Read(r.Context()) // until tail closes
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	// The timeout only bounds how long a tail that never gets its two
	// frames takes to fail.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := Main(ctx, []string{"tail", "--gateway-url", srv.URL, "--output-id", "demo",
		"--since", "5", "--epoch", "e1", "--count", "2", "--out", dir}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("tail: exit code got %d; want %d\nstdout %s\nstderr %s", code, ExitOK, &stdout, &stderr)
	}
	out := stdout.String()
	if got, want := <-queries, "epoch=e1&output_id=demo&since=5"; got != want {
		t.Errorf("query got %q; want %q", got, want)
	}
	epochDir := filepath.Join(dir, "epoch-e%2F2")
	for _, w := range []string{
		"hello: gateway gw, output demo, client -, starting after seq 5, epoch e1\n",
		"seq=6 output=demo client=- type=png size=2x1 bytes=3 ",
		"saved=" + filepath.Join(dir, "6.png") + "\n",
		"reset: epoch e/2, starting after seq 0 (sequences start over): stream recreated\n",
		"saving to " + epochDir + "\n",
		"saved=" + filepath.Join(epochDir, "1.png") + "\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("tail printed %q; want a line with %q", out, w)
		}
	}
	for name, want := range map[string]string{"6.png": "six", "epoch-e%2F2/1.png": "one"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s holds %q, %v; want %q", name, b, err, want)
		}
	}
}

func TestEpochDir(t *testing.T) {
	long := strings.Repeat("e", 101)
	tests := []struct {
		name, epoch, want string
	}{
		{"plain", "AZaz09_-", "epoch-AZaz09_-"},
		{"path", "../x", "epoch-%2E%2E%2Fx"},
		{"dot", ".", "epoch-%2E"},
		{"empty", "", "epoch-"},
		{"utf-8", "é", "epoch-%C3%A9"},
		{"long", long, "epoch.sha256-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := epochDir(tt.epoch)
			if !strings.HasPrefix(got, tt.want) || (tt.epoch != long && got != tt.want) || strings.ContainsAny(got, `/\`) {
				t.Errorf("epochDir(%q) got %q; want %q", tt.epoch, got, tt.want)
			}
		})
	}
	if a, b := epochDir(long), epochDir(long+"f"); a == b || len(a) != len("epoch.sha256-")+32 {
		t.Errorf("long epochs got %q and %q; want distinct names of %d bytes", a, b, len("epoch.sha256-")+32)
	}
}

// nativeFrame is a native frame of output demo with a 2x1 PNG header and
// img as its image bytes.
func nativeFrame(seq uint64, img string) []byte {
	h := wire.HeaderOf(seq, frame.Meta{OutputID: "demo", Format: frame.PNG, Width: 2, Height: 1, BatchSize: 1})
	return wire.EncodeNative(h, []byte(img))
}

// postEvent publishes an event through the producer's POST /v1/events and
// returns its seq.
func postEvent(t *testing.T, url, cid, body string) uint64 {
	t.Helper()
	res, err := http.Post(url+"/v1/events?client_id="+cid, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(b, &r) != nil || r.Seq == 0 {
		t.Fatalf("POST /v1/events: got %d %s; want 200 with a seq", res.StatusCode, b)
	}
	return r.Seq
}

// TestTailEvents: tail prints the ComfyUI events of its client id and
// broadcast ones, on one line each, in stream order with the frames, on
// the native endpoint (with their seq) and the ComfyDeploy one.
func TestTailEvents(t *testing.T) {
	url := startStack(t)
	status := postEvent(t, url, "", "{\"event\": \"status\",\n \"data\": {\"status\": {\"exec_info\": {\"queue_remaining\": 2}}}}")
	postEvent(t, url, "c2", `{"event":"progress","data":{"value":9,"max":9}}`) // another client's
	progress := postEvent(t, url, "c1", `{"event":"progress","data":{"value":3,"max":20,"node":"3"}}`)
	runMain(t, ExitOK, "publish", "--producer-url", url, "--output-id", "demo", "--client-id", "c1", "--type", "png", writeImages(t))

	out, _ := runMain(t, ExitOK, "tail", "--gateway-url", url, "--output-id", "demo", "--client-id", "c1", "--since", "0", "--count", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"hello: ",
		fmt.Sprintf(`event status seq %d: {"status":{"exec_info":{"queue_remaining":2}}}`, status),
		fmt.Sprintf(`event progress seq %d: {"value":3,"max":20,"node":"3"}`, progress),
		fmt.Sprintf("seq=%d output=demo client=c1 type=png", progress+1),
		fmt.Sprintf("seq=%d output=demo client=c1 type=png", progress+2),
	}
	if len(lines) != len(want) {
		t.Fatalf("tail printed %q; want %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("tail line %d got %q; want %q", i, lines[i], w)
		}
	}

	out, _ = runMain(t, ExitOK, "tail", "--gateway-url", url, "--comfydeploy", "--client-id", "c1", "--since", "0", "--count", "1")
	for _, w := range []string{
		"status: connected as clientId c1\n",
		`event status seq 0: {"status":{"exec_info":{"queue_remaining":2}}}` + "\n",
		`event progress seq 0: {"value":3,"max":20,"node":"3"}` + "\n",
		"seq=0 output=demo client=- type=png",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("comfydeploy tail printed %q; want a line with %q", out, w)
		}
	}
	if strings.Contains(out, `"value":9`) {
		t.Errorf("comfydeploy tail printed %q; want no event of another client", out)
	}
}
