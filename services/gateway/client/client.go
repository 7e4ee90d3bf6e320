package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
	"github.com/framecast/framecast/shared/wire"
)

// Endpoint paths, appended to Config.URL.
const (
	PathNative      = "/v1/ws"
	PathComfyDeploy = "/comfyui-deploy/ws"
)

// DefaultReadLimit bounds one websocket message when Config.ReadLimit is 0.
const DefaultReadLimit = 64 << 20

// Config describes one subscription. Dial needs URL; Stream takes its URLs
// from StreamConfig and ignores URL.
type Config struct {
	// URL is the gateway's base URL, http(s)://host:port or ws(s)://host:port
	// with an optional path prefix; the endpoint path is appended unless the
	// URL already ends with it.
	URL string

	// OutputID is the output to watch. Required on the native endpoint. The
	// ComfyDeploy endpoint has no such parameter: there the gateway sends
	// every output the caller may watch, and a non-empty OutputID makes the
	// client drop frames of other outputs.
	OutputID string

	// ClientID selects frames sent to this client id, besides broadcast ones.
	// On the ComfyDeploy endpoint it is the clientId; empty lets the gateway
	// generate one (see Control.SID).
	ClientID string

	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string

	// Since asks for every frame with a larger sequence, then live frames.
	// Last asks for the last Last frames instead (the native endpoint
	// only). At most one may be set; with neither the connection starts
	// live.
	Since *uint64
	Last  int

	// Epoch is the stream epoch Since belongs to: the Epoch of the hello or
	// reset that the sequence came with. It is sent only with Since and
	// requires it. Sequences are comparable only within one epoch; given
	// one, a gateway whose stream is in another epoch (or ends before
	// Since) answers with a reset instead of resuming at a sequence that
	// names another frame. Empty: Since is taken to be of the stream's
	// current epoch.
	Epoch string

	// Rendition picks the renditions of images on the native endpoint:
	// "full" (the images as published; "" is the same), "preview" (their
	// previews, for publishes that asked for previews), or "all" (each
	// preview just before its full frame). Frame.Header.Rendition says
	// which a frame is. With Last, the last Last images of that rendition
	// are sent (with "all", each with its preview). The ComfyDeploy
	// endpoint sends full frames only.
	Rendition string

	// ComfyDeploy selects the ComfyDeploy-compatible endpoint.
	ComfyDeploy bool

	// Header is added to the handshake request.
	Header http.Header

	// HTTPClient makes the handshake; nil is http.DefaultClient.
	HTTPClient *http.Client

	// ReadLimit bounds one message (image plus header) in bytes: 0 is
	// DefaultReadLimit, -1 removes the limit (a gateway can then make the
	// client allocate without bound). A larger message closes the
	// connection with 1009.
	ReadLimit int64
}

// validate checks every field except URL.
func (c Config) validate() error {
	if !c.ComfyDeploy || c.OutputID != "" {
		if err := subject.ValidateOutputID(c.OutputID); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
	}
	if err := subject.ValidateClientID(c.ClientID); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if c.Last < 0 {
		return fmt.Errorf("%w: last is %d; allowed: 0 (off) or a positive count", ErrInvalidConfig, c.Last)
	}
	if c.Last > 0 && c.ComfyDeploy {
		return fmt.Errorf("%w: last is set on the ComfyDeploy endpoint; allowed there: since", ErrInvalidConfig)
	}
	if c.Since != nil && c.Last > 0 {
		return fmt.Errorf("%w: since and last are both set; allowed: one of them", ErrInvalidConfig)
	}
	if c.Epoch != "" && c.Since == nil {
		return fmt.Errorf("%w: epoch %q is set without since; allowed: an epoch only together with the since it belongs to", ErrInvalidConfig, c.Epoch)
	}
	switch c.Rendition {
	case "", "full":
	case "preview", "all":
		if c.ComfyDeploy {
			return fmt.Errorf("%w: rendition %q on the ComfyDeploy endpoint; allowed there: full (it never sends previews)", ErrInvalidConfig, c.Rendition)
		}
	default:
		return fmt.Errorf("%w: rendition %q; allowed: full (or empty), preview, all", ErrInvalidConfig, c.Rendition)
	}
	if c.ReadLimit < -1 {
		return fmt.Errorf("%w: read limit is %d; allowed: -1 (none), 0 (default %d) or a positive byte count", ErrInvalidConfig, c.ReadLimit, DefaultReadLimit)
	}
	return nil
}

// endpoint returns the websocket URL of base for c.
func (c Config) endpoint(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("%w: gateway url %q: %v", ErrInvalidConfig, base, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("%w: gateway url %q has scheme %q; allowed: http, https, ws, wss", ErrInvalidConfig, base, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: gateway url %q has no host; want e.g. http://localhost:8080", ErrInvalidConfig, base)
	}
	path := PathNative
	if c.ComfyDeploy {
		path = PathComfyDeploy
	}
	if !strings.HasSuffix(u.Path, path) {
		u.Path = strings.TrimSuffix(u.Path, "/") + path
	}
	u.RawPath = ""
	q := url.Values{}
	if c.ComfyDeploy {
		if c.ClientID != "" {
			q.Set("clientId", c.ClientID)
		}
	} else {
		q.Set("output_id", c.OutputID)
		if c.ClientID != "" {
			q.Set("client_id", c.ClientID)
		}
		if c.Last > 0 {
			q.Set("last", strconv.Itoa(c.Last))
		}
		if c.Rendition != "" && c.Rendition != "full" { // full is the gateway's default
			q.Set("rendition", c.Rendition)
		}
	}
	if c.Since != nil {
		q.Set("since", strconv.FormatUint(*c.Since, 10))
		if c.Epoch != "" {
			q.Set("epoch", c.Epoch)
		}
	}
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String(), nil
}

// Conn is one websocket connection to a gateway. Next must not be called
// concurrently with itself; Close may be called at any time from any
// goroutine. The goroutines the websocket library runs for a Conn end when
// it is closed: by Close, by the peer, by a read error, or when the ctx
// given to Next is done.
type Conn struct {
	ws     *websocket.Conn
	cfg    Config
	url    string
	comfy  bool
	filter string // ComfyDeploy: only frames of this output id, "" for all
	status bool   // ComfyDeploy: the gateway's status message has come
}

// Dial connects to the gateway at cfg.URL. A handshake the gateway refused
// with 400, 401 or 403 wraps ErrRejected; the error then includes the
// start of the response body.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, err := cfg.endpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	h := cfg.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if cfg.Token != "" {
		h.Set("Authorization", "Bearer "+cfg.Token)
	}
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: cfg.HTTPClient, HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, handshakeError(u, resp, err)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	switch {
	case cfg.ReadLimit == 0:
		ws.SetReadLimit(DefaultReadLimit)
	default:
		ws.SetReadLimit(cfg.ReadLimit)
	}
	c := &Conn{ws: ws, cfg: cfg, url: u, comfy: cfg.ComfyDeploy}
	if cfg.ComfyDeploy {
		c.filter = cfg.OutputID
	}
	return c, nil
}

func handshakeError(u string, resp *http.Response, err error) error {
	var body string
	if resp.Body != nil {
		b := make([]byte, 1024)
		n, _ := resp.Body.Read(b)
		body = strings.TrimSpace(string(b[:n]))
	}
	if msg := errorMessage(body); msg != "" {
		body = msg
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("dial %s: %w: HTTP %d: %s", u, ErrRejected, resp.StatusCode, body)
	}
	if body != "" {
		return fmt.Errorf("dial %s: HTTP %d: %s", u, resp.StatusCode, body)
	}
	return fmt.Errorf("dial %s: HTTP %d: %w", u, resp.StatusCode, err)
}

// errorMessage extracts the message of a JSON error body
// {"error":{"code","message"}}, or returns "".
func errorMessage(body string) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.Error.Message == "" {
		return ""
	}
	if e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	return e.Error.Message
}

// URL is the websocket URL the Conn dialed, query included.
func (c *Conn) URL() string { return c.url }

// Next reads the next message. When the gateway closes the connection the
// error wraps websocket.CloseError: websocket.CloseStatus(err) is its close
// code (1001 when the gateway drains, 1008 for auth, 4008 for a slow
// client; code 1008 also wraps ErrRejected). A message that cannot be
// decoded gives an error wrapping ErrMalformed; the connection stays open
// and the caller decides whether to go on. When ctx is done the connection
// is closed.
func (c *Conn) Next(ctx context.Context) (Message, error) {
	for {
		typ, b, err := c.ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == wire.ClosePolicy {
				return nil, fmt.Errorf("read %s: %w: %w", c.url, ErrRejected, err)
			}
			return nil, fmt.Errorf("read %s: %w", c.url, err)
		}
		m, err := c.decode(typ, b)
		if err != nil {
			return nil, err
		}
		if f, ok := m.(*Frame); ok && c.filter != "" && f.OutputID != c.filter {
			continue
		}
		return m, nil
	}
}

func (c *Conn) decode(typ websocket.MessageType, b []byte) (Message, error) {
	if typ == websocket.MessageText {
		if c.comfy {
			return c.decodeComfyText(b)
		}
		ctl, err := wire.DecodeControl(b)
		if err != nil {
			return nil, err
		}
		switch {
		case ctl.Type == wire.TypeReset && ctl.Since == nil:
			// Without since the client could not know where it stands.
			return nil, fmt.Errorf("%w: reset to epoch %q has no since", ErrMalformed, ctl.Epoch)
		case ctl.Type == wire.TypeEvent && (ctl.Seq == nil || *ctl.Seq == 0):
			// Events are resumed and de-duplicated by sequence like frames.
			return nil, fmt.Errorf("%w: event %q has no seq; sequences start at 1", ErrMalformed, ctl.Event)
		case ctl.Type == wire.TypeEvent && ctl.Event == "":
			return nil, fmt.Errorf("%w: event %d has no name", ErrMalformed, *ctl.Seq)
		}
		return &Control{Control: ctl}, nil
	}
	if c.comfy {
		fr, err := wire.DecodeComfy(b)
		if err != nil {
			return nil, err
		}
		return &Frame{
			Header: wire.Header{OutputID: fr.OutputID, ContentType: fr.Format.ContentType()},
			Format: fr.Format, OutputID: fr.OutputID, Image: fr.Image,
		}, nil
	}
	h, img, err := wire.DecodeNative(b)
	if err != nil {
		return nil, err
	}
	if h.Seq == 0 {
		return nil, fmt.Errorf("%w: native frame has seq 0; sequences start at 1", ErrMalformed)
	}
	f, err := frame.FormatOf(h.ContentType)
	if err != nil {
		return nil, fmt.Errorf("%w: native frame %d: %v", ErrMalformed, h.Seq, err)
	}
	return &Frame{Seq: h.Seq, Header: h, Format: f, OutputID: h.OutputID, Image: img}, nil
}

// decodeComfyText reads a ComfyDeploy text message {"event","data"}. The
// first status message with a sid is the gateway's (TypeStatus); every
// other message is a ComfyUI event (wire.TypeEvent, without Seq), ComfyUI's
// own status events included.
func (c *Conn) decodeComfyText(b []byte) (Message, error) {
	var m struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: comfydeploy text message: %v", ErrMalformed, err)
	}
	if m.Event == "" {
		return nil, fmt.Errorf("%w: comfydeploy text message has no event", ErrMalformed)
	}
	if len(m.Data) == 0 || m.Data[0] != '{' {
		return nil, fmt.Errorf("%w: comfydeploy event %q: data is not an object", ErrMalformed, m.Event)
	}
	if !c.status && m.Event == TypeStatus {
		var d struct {
			SID string `json:"sid"`
		}
		if json.Unmarshal(m.Data, &d) == nil && d.SID != "" {
			c.status = true
			return &Control{Control: wire.Control{Type: TypeStatus}, SID: d.SID}, nil
		}
	}
	return &Control{Control: wire.Control{Type: wire.TypeEvent, Event: m.Event, Data: m.Data}}, nil
}

// Close closes the connection with 1000 (normal closure). It waits at most
// a few seconds for the gateway's close frame.
func (c *Conn) Close() error {
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
