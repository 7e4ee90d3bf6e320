package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// publishPreview stores a preview frame for (oid, cid) and returns its
// sequence.
func (p *publisher) publishPreview(oid, cid string, img []byte) uint64 {
	p.t.Helper()
	m := frame.Meta{OutputID: oid, ClientID: cid, Format: frame.WEBP, Width: 2, Height: 1,
		BatchSize: 1, Timestamp: time.Now().UnixMilli(), Rendition: frame.Preview}
	msg := nats.NewMsg(m.Subject())
	m.Header(msg.Header)
	msg.Data = img
	ack, err := p.js.PublishMsg(context.Background(), msg)
	if err != nil {
		p.t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

// TestComfyDeployNeverSendsPreviews: the ComfyDeploy endpoint sends a
// publish's full frames only; the seed's clients could not tell a preview
// from the image.
func TestComfyDeployNeverSendsPreviews(t *testing.T) {
	ns := testNATS(t)
	pub := newPublisher(t, ns)
	_, hs := testGateway(t, ns, nil)
	c := dial(t, hs.URL, "/comfyui-deploy/ws?clientId=c&since=0", nil)
	pub.publishPreview("o", "c", []byte("preview-1"))
	pub.publish("o", "c", []byte("full-1"))
	pub.publishPreview("o", "", []byte("preview-2"))
	pub.publish("o", "", []byte("full-2"))
	if m := readMsg(t, c); string(m.raw) != string(wire.Status("c")) {
		t.Fatalf("first message %q; want the status", m.raw)
	}
	for _, want := range []string{"full-1", "full-2"} {
		m := readMsg(t, c)
		fr, err := wire.DecodeComfy(m.raw)
		if err != nil || string(fr.Image) != want {
			t.Fatalf("got %q (%v); want the frame %q", m.raw, err, want)
		}
	}
}

// TestRenditionRefused: an unknown rendition is refused before the
// upgrade with a JSON error that lists the allowed values.
func TestRenditionRefused(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	_, resp, err := websocket.Dial(context.Background(), wsURL(hs.URL, "/v1/ws?output_id=o&rendition=thumb"), nil)
	if err == nil {
		t.Fatal("dial succeeded; want HTTP 400")
	}
	if resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("got response %v; want HTTP 400", resp)
	}
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != "bad_request" ||
		!strings.Contains(e.Error.Message, `rendition "thumb" is unknown; allowed: full (the default), preview, all`) {
		t.Fatalf("got body %s (%v); want a bad_request naming the allowed renditions", b, err)
	}
}
