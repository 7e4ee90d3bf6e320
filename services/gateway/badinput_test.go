package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// TestBadInput is the websocket endpoints' table of bad input (the table
// in docs/gateway.md): each request is answered before the upgrade with
// its documented status and JSON error code, and the message says what is
// wrong; the same request over plain GET gets the same answer. The server
// is the one cmd/gateway runs (Server.HTTPServer), so that its header
// bound applies.
func TestBadInput(t *testing.T) {
	ns := testNATS(t)
	srv, _ := testGateway(t, ns, nil)
	hs := serveHTTP(t, srv, srv.Handler())
	huge := strings.Repeat("9", 30)                                              // past uint64
	big := http.Header{"X-Padding": {strings.Repeat("p", MaxHeaderBytes+8<<10)}} // over MaxHeaderBytes and net/http's slack
	const bad = "bad_request"
	tests := []struct {
		name   string
		path   string
		header http.Header
		status int
		code   string // "" for net/http's own plain-text answer
		want   string // in the message
	}{
		// Ids.
		{"no output_id", "/v1/ws", nil, 400, bad, "output_id is empty"},
		{"empty output_id", "/v1/ws?output_id=", nil, 400, bad, "output_id is empty"},
		{"long output_id", "/v1/ws?output_id=" + strings.Repeat("x", 25), nil, 400, bad, "greater than 24 bytes"},
		{"huge output_id", "/v1/ws?output_id=" + strings.Repeat("x", 8<<10), nil, 400, bad, "greater than 24 bytes (got 8192)"},
		{"non-ascii output_id", "/v1/ws?output_id=%C3%A9", nil, 400, bad, "not ASCII encodable"},
		{"control char output_id", "/v1/ws?output_id=a%00b", nil, 400, bad, "control character 0x00"},
		{"repeated output_id", "/v1/ws?output_id=a&output_id=b", nil, 400, bad, "output_id is repeated (2 times)"},
		{"control char client_id", "/v1/ws?output_id=o&client_id=a%01", nil, 400, bad, "control character"},
		{"long client_id", "/v1/ws?output_id=o&client_id=" + strings.Repeat("c", 129), nil, 400, bad, "greater than 128 bytes"},
		{"repeated client_id", "/v1/ws?output_id=o&client_id=a&client_id=a", nil, 400, bad, "client_id is repeated"},
		{"comfy bad clientId", "/comfyui-deploy/ws?clientId=%FF", nil, 400, bad, "not ASCII encodable"},
		{"comfy long clientId", "/comfyui-deploy/ws?clientId=" + strings.Repeat("c", 129), nil, 400, bad, "greater than 128 bytes"},
		{"comfy repeated clientId", "/comfyui-deploy/ws?clientId=a&clientId=b", nil, 400, bad, "clientId is repeated"},

		// since.
		{"since not a number", "/v1/ws?output_id=o&since=abc", nil, 400, bad, `since "abc" is not a stream sequence`},
		{"empty since", "/v1/ws?output_id=o&since=", nil, 400, bad, `since "" is not a stream sequence`},
		{"negative since", "/v1/ws?output_id=o&since=-1", nil, 400, bad, "not a stream sequence"},
		{"signed since", "/v1/ws?output_id=o&since=%2B1", nil, 400, bad, "not a stream sequence"},
		{"fractional since", "/v1/ws?output_id=o&since=1.5", nil, 400, bad, "not a stream sequence"},
		{"hex since", "/v1/ws?output_id=o&since=0x10", nil, 400, bad, "not a stream sequence"},
		{"spaced since", "/v1/ws?output_id=o&since=%201", nil, 400, bad, "not a stream sequence"},
		{"since past uint64", "/v1/ws?output_id=o&since=" + huge, nil, 400, bad, "not a stream sequence"},
		{"repeated since", "/v1/ws?output_id=o&since=1&since=2", nil, 400, bad, "since is repeated (2 times)"},
		{"since and last", "/v1/ws?output_id=o&since=1&last=2", nil, 400, bad, "exclusive"},
		{"comfy since not a number", "/comfyui-deploy/ws?since=1.5", nil, 400, bad, "not a stream sequence"},
		{"comfy negative since", "/comfyui-deploy/ws?since=-7", nil, 400, bad, "not a stream sequence"},
		{"comfy since past uint64", "/comfyui-deploy/ws?since=" + huge, nil, 400, bad, "not a stream sequence"},
		{"comfy repeated since", "/comfyui-deploy/ws?since=1&since=1", nil, 400, bad, "since is repeated"},

		// last.
		{"last zero", "/v1/ws?output_id=o&last=0", nil, 400, bad, "out of range"},
		{"negative last", "/v1/ws?output_id=o&last=-1", nil, 400, bad, "out of range"},
		{"last too big", "/v1/ws?output_id=o&last=10001", nil, 400, bad, "out of range"},
		{"last past int64", "/v1/ws?output_id=o&last=" + huge, nil, 400, bad, "out of range"},
		{"last not a number", "/v1/ws?output_id=o&last=x", nil, 400, bad, "out of range"},
		{"repeated last", "/v1/ws?output_id=o&last=1&last=2", nil, 400, bad, "last is repeated"},
		{"comfy last", "/comfyui-deploy/ws?last=3", nil, 400, bad, "not supported"},

		// epoch.
		{"epoch without since", "/v1/ws?output_id=o&epoch=123", nil, 400, bad, "epoch goes with since"},
		{"epoch with last", "/v1/ws?output_id=o&last=2&epoch=123", nil, 400, bad, "epoch goes with since"},
		{"epoch not a number", "/v1/ws?output_id=o&since=1&epoch=abc", nil, 400, bad, `epoch "abc" is not a stream epoch`},
		{"negative epoch", "/v1/ws?output_id=o&since=1&epoch=-5", nil, 400, bad, "is not a stream epoch"},
		{"epoch too long", "/v1/ws?output_id=o&since=1&epoch=" + strings.Repeat("1", 21), nil, 400, bad, "is not a stream epoch"},
		{"empty epoch", "/v1/ws?output_id=o&since=1&epoch=", nil, 400, bad, "is not a stream epoch"},
		{"repeated epoch", "/v1/ws?output_id=o&since=1&epoch=1&epoch=2", nil, 400, bad, "epoch is repeated"},
		{"comfy epoch without since", "/comfyui-deploy/ws?epoch=123", nil, 400, bad, "epoch goes with since"},
		{"comfy epoch not a number", "/comfyui-deploy/ws?since=1&epoch=x", nil, 400, bad, "is not a stream epoch"},

		// Unknown parameters: refused on the native endpoint, where a
		// misspelled since would silently start live only.
		{"misspelled since", "/v1/ws?output_id=o&sinse=5", nil, 400, bad, `unknown parameter "sinse"; this endpoint takes ` + strings.Join(nativeParams, ", ")},
		{"comfy parameter on native", "/v1/ws?output_id=o&clientId=a", nil, 400, bad, `unknown parameter "clientId"`},
		{"repeated token", "/v1/ws?output_id=o&token=a&token=b", nil, 400, bad, "token is repeated"},
		{"repeated rendition", "/v1/ws?output_id=o&rendition=full&rendition=all", nil, 400, bad, "rendition is repeated"},
		{"unknown rendition", "/v1/ws?output_id=o&rendition=huge", nil, 400, bad, `rendition "huge" is unknown`},

		// Oversized requests: net/http answers before the gateway.
		{"oversized header", "/v1/ws?output_id=o", big, 431, "", ""},
		{"comfy oversized header", "/comfyui-deploy/ws", big, 431, "", ""},
		{"oversized URL", "/v1/ws?output_id=o&client_id=" + strings.Repeat("c", MaxHeaderBytes+8<<10), nil, 431, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := websocket.Dial(context.Background(), wsURL(hs.URL, tt.path), &websocket.DialOptions{HTTPHeader: tt.header})
			if err == nil || resp == nil {
				t.Fatalf("upgrade: got %v; want status %d", err, tt.status)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("upgrade status: got %d; want %d", resp.StatusCode, tt.status)
			}
			req, _ := http.NewRequest("GET", hs.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err = http.DefaultClient.Do(req) // the same handler, no upgrade asked
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tt.code == "" {
				if resp.StatusCode != tt.status {
					t.Fatalf("GET status: got %d; want %d", resp.StatusCode, tt.status)
				}
				return
			}
			body := decodeError(t, resp)
			if resp.StatusCode != tt.status || body.Error.Code != tt.code || !strings.Contains(body.Error.Message, tt.want) {
				t.Fatalf("GET: got %d %+v; want %d %s with %q", resp.StatusCode, body.Error, tt.status, tt.code, tt.want)
			}
		})
	}
	if got := metricValue(t, hs.URL, `framecast_gateway_upgrades_refused_total{code="bad_request"}`); got == 0 {
		t.Errorf("bad requests counted: got %v; want more than 0", got)
	}
}

// TestOddInputAccepted: input that looks wrong but has a documented
// meaning is accepted. A since past the stream's last sequence (even the
// largest) resets the client to the stream's start; the ComfyDeploy
// endpoint leaves the apps' own parameters alone.
func TestOddInputAccepted(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	p := newPublisher(t, ns)
	seq := p.publish("o", "", img(1))

	c := dial(t, hs.URL, "/v1/ws?output_id=o&since=18446744073709551615", nil)
	readControl(t, c, wire.TypeHello)
	if r := readControl(t, c, wire.TypeReset); r.Since == nil || *r.Since != seq-1 {
		t.Fatalf("reset: got %+v; want since %d (the stream's start)", r, seq-1)
	}
	if h := readFrames(t, c, 1)[0]; h.Seq != seq {
		t.Fatalf("after the reset: got seq %d; want %d", h.Seq, seq)
	}

	cf := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=a&token=app-own&deployment=x&deployment=y", nil)
	if m := readMsg(t, cf); string(m.raw) != string(wire.Status("a")) {
		t.Fatalf("comfy: got %s; want %s", m.raw, wire.Status("a"))
	}
}

func decodeError(t *testing.T, resp *http.Response) errorBody {
	t.Helper()
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("status %d: body is not a JSON error: %v", resp.StatusCode, err)
	}
	return body
}
