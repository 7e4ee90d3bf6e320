package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/services/gateway/auth"
	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/services/gateway/zerocopy"
	"github.com/framecast/framecast/shared/subject"
)

// MaxLast bounds the last query parameter.
const MaxLast = 10000

// Endpoint names, as in metrics.
const (
	endpointNative = "native"
	endpointComfy  = "comfy"
)

// request is a validated upgrade request.
type request struct {
	endpoint string
	outputID string // native only
	clientID string
	sub      string // the token's sub, counted by the limits
	since    *uint64
	last     int
	expiry   time.Time
	epoch    string // with since: the stream epoch the client resumes in
	watches  []hub.Watch
	filters  []string // stream subjects, for last=n
	// renditions (native only): which renditions of images it takes.
	renditions replay.Renditions
}

type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

func (s *Server) serveNative(w http.ResponseWriter, r *http.Request) {
	req, herr := s.parseNative(r)
	s.upgrade(w, r, req, herr)
}

func (s *Server) serveComfy(w http.ResponseWriter, r *http.Request) {
	req, herr := s.parseComfy(r)
	s.upgrade(w, r, req, herr)
}

// maxEpoch bounds the epoch parameter: a stream epoch is a decimal
// number of nanoseconds.
const maxEpoch = 20

func parseResume(q map[string][]string, allowLast bool) (since *uint64, last int, epoch string, herr *httpError) {
	get := func(k string) (string, bool) {
		v, ok := q[k]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	sv, hasSince := get("since")
	lv, hasLast := get("last")
	ev, hasEpoch := get("epoch")
	if !allowLast && hasLast {
		return nil, 0, "", badRequest("last is not supported on this endpoint; use since=<seq>")
	}
	if hasSince && hasLast {
		return nil, 0, "", badRequest("since and last are exclusive; send at most one")
	}
	if hasSince {
		n, err := strconv.ParseUint(sv, 10, 64)
		if err != nil {
			return nil, 0, "", badRequest("since %q is not a stream sequence; want an unsigned integer", sv)
		}
		since = &n
	}
	if hasLast {
		n, err := strconv.Atoi(lv)
		if err != nil || n < 1 || n > MaxLast {
			return nil, 0, "", badRequest("last %q is out of range; want an integer 1..%d", lv, MaxLast)
		}
		last = n
	}
	if hasEpoch {
		if !hasSince {
			return nil, 0, "", badRequest("epoch goes with since: send since=<seq>&epoch=<the hello's epoch>, or neither")
		}
		if len(ev) == 0 || len(ev) > maxEpoch || strings.Trim(ev, "0123456789") != "" {
			return nil, 0, "", badRequest("epoch %q is not a stream epoch; send back the epoch of the hello or reset message", ev)
		}
		epoch = ev
	}
	return since, last, epoch, nil
}

// nativeParams are the native endpoint's query parameters. Any other is
// refused: a misspelled since would otherwise start a live-only
// connection, and the client would miss frames without knowing.
var nativeParams = []string{"output_id", "client_id", "since", "last", "epoch", "rendition", "token"}

// checkParams refuses a repeated parameter of known, and, when strict, a
// parameter not in known.
func checkParams(q url.Values, known []string, strict bool) *httpError {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		switch {
		case !slices.Contains(known, k):
			if strict {
				return badRequest("unknown parameter %q; this endpoint takes %s", k, strings.Join(known, ", "))
			}
		case len(q[k]) > 1:
			return badRequest("%s is repeated (%d times); send it once", k, len(q[k]))
		}
	}
	return nil
}

func (s *Server) parseNative(r *http.Request) (*request, *httpError) {
	q := r.URL.Query()
	if herr := checkParams(q, nativeParams, true); herr != nil {
		return nil, herr
	}
	req := &request{endpoint: endpointNative, outputID: q.Get("output_id"), clientID: q.Get("client_id")}
	if err := subject.ValidateOutputID(req.outputID); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := subject.ValidateClientID(req.clientID); err != nil {
		return nil, badRequest("%v", err)
	}
	var herr *httpError
	if req.since, req.last, req.epoch, herr = parseResume(q, true); herr != nil {
		return nil, herr
	}
	if req.renditions, herr = parseRenditions(q); herr != nil {
		return nil, herr
	}
	claims, herr := s.authenticate(r, "token")
	if herr != nil {
		return nil, herr
	}
	if claims != nil {
		if !claims.MayWatch(req.outputID) {
			return nil, s.forbidden("scope_output", "token does not allow output_id %q; it allows %q", req.outputID, claims.Outputs)
		}
		if herr := s.actAs(claims, &req.clientID); herr != nil {
			return nil, herr
		}
		req.expiry = claims.Expiry()
		req.sub = claims.Subject
	}
	ctok := subject.ClientToken(req.clientID)
	frames := outputWatch(req.outputID, ctok)
	frames.Renditions = req.renditions
	req.watches = []hub.Watch{frames, eventsWatch(ctok)}
	req.filters = []string{subject.Frames(req.outputID, "")}
	if req.clientID != "" {
		req.filters = append(req.filters, subject.Frames(req.outputID, req.clientID))
	}
	return req, nil
}

func (s *Server) parseComfy(r *http.Request) (*request, *httpError) {
	q := r.URL.Query()
	// The apps' URLs carry parameters of their own: only repeats of the
	// gateway's are refused.
	if herr := checkParams(q, []string{"clientId", "since", "last", "epoch", s.cfg.ComfyTokenParam}, false); herr != nil {
		return nil, herr
	}
	req := &request{endpoint: endpointComfy, clientID: q.Get("clientId")}
	if err := subject.ValidateClientID(req.clientID); err != nil {
		return nil, badRequest("clientId: %v", err)
	}
	var herr *httpError
	if req.since, _, req.epoch, herr = parseResume(q, false); herr != nil {
		return nil, herr
	}
	claims, herr := s.authenticate(r, s.cfg.ComfyTokenParam)
	if herr != nil {
		return nil, herr
	}
	outputs := []string{auth.AllOutputs}
	if claims != nil {
		if herr := s.actAs(claims, &req.clientID); herr != nil {
			return nil, herr
		}
		req.expiry = claims.Expiry()
		req.sub = claims.Subject
		outputs = claims.Outputs
	}
	if req.clientID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		req.clientID = hex.EncodeToString(b[:])
	}
	ctok := subject.ClientToken(req.clientID)
	if slices.Contains(outputs, auth.AllOutputs) {
		req.watches = []hub.Watch{
			{Live: subject.LivePrefix + ".*." + ctok, Filter: subject.Prefix + ".*." + ctok},
			{Live: subject.LivePrefix + ".*." + subject.Broadcast, Filter: subject.Prefix + ".*." + subject.Broadcast},
		}
		return req, nil
	}
	seen := map[string]bool{}
	for _, oid := range outputs {
		if seen[oid] || subject.ValidateOutputID(oid) != nil {
			continue
		}
		seen[oid] = true
		req.watches = append(req.watches, outputWatch(oid, ctok))
	}
	if len(req.watches) > 0 {
		req.watches = append(req.watches, eventsWatch(ctok))
	}
	if len(req.watches) == 0 {
		return nil, s.forbidden("scope_output", "token allows no valid output id")
	}
	return req, nil
}

// outputWatch is the ring of every frame of output oid, of which the
// connection takes those for client token ctok and broadcasts. One ring
// per output, not per client, lets one stream read serve every client of
// an output (a reconnect storm reads the stream once).
func outputWatch(oid, ctok string) hub.Watch {
	live := strings.TrimSuffix(subject.Live(oid, ""), subject.Broadcast) + "*"
	filter := strings.TrimSuffix(subject.Frames(oid, ""), subject.Broadcast) + "*"
	return hub.Watch{Live: live, Filter: filter, Client: ctok}
}

// eventsWatch is the ring of every client's ComfyUI events, of which the
// connection takes those for client token ctok and broadcasts. (The
// ComfyDeploy endpoint's wildcard rings, outputs.*.<client>, hold its
// events already.)
func eventsWatch(ctok string) hub.Watch {
	return hub.Watch{Live: eventsLive, Filter: eventsFilter, Client: ctok}
}

// The events ring's subjects, built once rather than for every connection.
var (
	eventsLive   = strings.TrimSuffix(subject.LiveEvents(""), subject.Broadcast) + "*"
	eventsFilter = strings.TrimSuffix(subject.Events(""), subject.Broadcast) + "*"
)

// authenticate returns the claims of the token (in the Authorization
// header, or the query parameter param), nil claims for an anonymous
// caller where that is allowed, or the refusal.
func (s *Server) authenticate(r *http.Request, param string) (*auth.Claims, *httpError) {
	tok := auth.TokenParam(r, param)
	if tok == "" && s.cfg.AllowAnonymous {
		return nil, nil
	}
	if s.verifier == nil {
		return nil, nil // anonymous gateway without a secret: tokens are ignored
	}
	c, err := s.verifier.Verify(tok)
	if err != nil {
		reason := "invalid"
		switch {
		case errors.Is(err, auth.ErrMissing):
			reason = "missing"
		case errors.Is(err, auth.ErrExpired):
			reason = "expired"
		}
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		return nil, &httpError{http.StatusUnauthorized, "unauthorized", err.Error()}
	}
	return c, nil
}

// actAs applies the token's sub to a requested client id: an empty id
// becomes sub; another id than sub is refused.
func (s *Server) actAs(c *auth.Claims, clientID *string) *httpError {
	if c.Subject == "" {
		return nil
	}
	if *clientID == "" {
		*clientID = c.Subject
		return nil
	}
	if *clientID != c.Subject {
		return s.forbidden("scope_client", "token may act as client id %q only, not %q", c.Subject, *clientID)
	}
	return nil
}

func (s *Server) forbidden(reason, format string, args ...any) *httpError {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	return &httpError{http.StatusForbidden, "forbidden", fmt.Sprintf(format, args...)}
}

// upgrade refuses bad requests with a JSON error, or accepts the socket
// and runs its session until it ends.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, req *request, herr *httpError) {
	if s.isDraining() {
		s.refuse(w, &httpError{http.StatusServiceUnavailable, "draining", "this gateway is draining; connect to another gateway"})
		return
	}
	if herr != nil {
		s.refuse(w, herr)
		return
	}
	ls, herr := s.limits.acquire(s.ips.of(r), req.sub, req.since != nil || req.last > 0)
	if herr != nil {
		s.refuse(w, herr)
		return
	}
	if s.hub.Info().Epoch == "" {
		// No stream lookup has succeeded yet: without one, a live-only
		// client's start could not be told from the window's.
		_, err, _ := s.firstLookup.Do("stream", func() (any, error) {
			// Not the request's context: others wait on this lookup too.
			return s.refreshStream(context.WithoutCancel(r.Context()))
		})
		if err != nil {
			ls.release()
			s.refuse(w, &httpError{http.StatusServiceUnavailable, "stream_unavailable", "the stream cannot be looked up yet; try again: " + err.Error()})
			return
		}
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		OriginPatterns:  s.cfg.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		ls.release()
		s.log.Debug("websocket accept failed", "err", err, "origin", r.Header.Get("Origin"))
		return // Accept wrote the response
	}
	ss := newSession(s, ws, hw.watched, hw.in, req)
	ss.lease = ls
	hw.watched.s = ss
	if !s.add(ss) {
		ls.release()
		_ = ws.Close(websocket.StatusCode(1001), "gateway draining; reconnect to another gateway")
		return
	}
	// The session runs on its own goroutines; returning lets net/http
	// free the request and this goroutine's stack.
	ss.begin()
}

// retryAfter is the Retry-After, in seconds, of the refusals a client
// should retry as they are: the gateway is draining or cannot look the
// stream up yet (another gateway or a second later will do), or a limit
// holds until other connections end or catch up.
var retryAfter = map[string]string{
	"draining":           "1",
	"stream_unavailable": "1",
	codeGatewayFull:      "1",
	codeIPResumes:        "1",
	codeIPConns:          "5",
	codeSubConns:         "5",
}

// refuse answers an upgrade request with herr's JSON error, and counts it.
func (s *Server) refuse(w http.ResponseWriter, herr *httpError) {
	s.metrics.refused.WithLabelValues(herr.code).Inc()
	if ra, ok := retryAfter[herr.code]; ok {
		w.Header().Set("Retry-After", ra)
	}
	writeError(w, herr.status, herr.code, herr.msg)
}

// Buffer sizes of a hijacked connection. net/http hands over 4 KiB each;
// clients send mostly control frames (a pong's header and payload fit in
// 128 bytes), and what is written past the buffer goes to the socket
// directly (the watchedConn sends the buffered start with it in one
// writev), so small buffers cost no system call and save memory on every
// idle connection.
const (
	readBufferSize  = 128
	writeBufferSize = 128
)

// hijackWriter gives the websocket library small buffers when it hijacks
// the connection, and keeps the connection for the session.
type hijackWriter struct {
	http.ResponseWriter
	watched *watchedConn
	in      *clientConn
}

// watchedConn tells the session each time the connection takes bytes, for
// the write watchdog, and saves a system call per frame: while the
// session writes a message, the library's full buffer (which it flushes,
// holding the frame header, before it writes a large payload straight
// through) is held back and sent with the next write in one writev. The
// session's flush sends what is held when the message is written. Its
// methods may run concurrently: the library answers pings and close
// frames from the reader goroutine, and those frames (at most 127 bytes)
// are never held, so a reader that ends the session right after one
// leaves nothing unsent.
type watchedConn struct {
	net.Conn
	s   *session
	raw syscall.RawConn  // the socket, for zero-copy sends; nil: none
	zc  *zerocopy.Sender // made at the first zero-copy send

	mu      sync.Mutex
	holding bool            // a message is being written
	held    *[holdSize]byte // from holdPool while bytes are held
	n       int
	bufs    net.Buffers
	arr     [2][]byte
}

// holdSize is what a watchedConn holds back: the websocket library's
// buffer (writeBufferSize).
const holdSize = writeBufferSize

var holdPool = sync.Pool{New: func() any { return new([holdSize]byte) }}

func (c *watchedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding && c.n == 0 && len(p) == holdSize {
		c.held = holdPool.Get().(*[holdSize]byte)
		c.n = copy(c.held[:], p)
		return len(p), nil
	}
	if c.n == 0 {
		n, err := c.Conn.Write(p)
		c.progressed(n)
		return n, err
	}
	c.arr[0], c.arr[1] = c.held[:c.n], p
	c.bufs = c.arr[:]
	total := int64(c.n + len(p))
	n, err := c.bufs.WriteTo(c.Conn)
	c.progressed(int(n))
	c.release()
	if n < total && err == nil {
		err = io.ErrShortWrite
	}
	return max(0, int(n)-(int(total)-len(p))), err
}

// hold starts holding small writes back; flush sends what is held and
// stops.
func (c *watchedConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

func (c *watchedConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if c.n == 0 {
		return nil
	}
	n, err := c.Conn.Write(c.held[:c.n])
	c.progressed(n)
	c.release()
	return err
}

// send writes a whole message from a zero-copy span. c.mu orders it with
// the library's writes, and the library writes a control frame (a pong, a
// close) in one Write: a frame never lands inside another. After the
// client's close frame (which the library answers) it sends nothing.
func (c *watchedConn) send(sp *zerocopy.Span, in *clientConn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in.peerClosed.Load() {
		return net.ErrClosed
	}
	if c.n > 0 { // held by a message whose flush has not come yet
		n, err := c.Conn.Write(c.held[:c.n])
		c.progressed(n)
		c.release()
		if err != nil {
			return err
		}
	}
	if c.zc == nil {
		c.zc = zerocopy.NewSender(c.raw, c.progressed)
	}
	return c.zc.Send(sp)
}

// release returns the hold buffer. It needs c.mu.
func (c *watchedConn) release() {
	c.arr = [2][]byte{}
	c.bufs = nil
	c.n = 0
	if c.held != nil {
		holdPool.Put(c.held)
		c.held = nil
	}
}

func (c *watchedConn) progressed(n int) {
	if n > 0 && c.s != nil {
		c.s.progress()
	}
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The library reads through a clientConn (see park.go), which hands
	// on first the bytes the client sent after its request.
	in := &clientConn{Conn: conn}
	if n := brw.Reader.Buffered(); n > 0 {
		pending, _ := brw.Reader.Peek(n)
		in.pending = bytes.Clone(pending)
	}
	in.br = bufio.NewReaderSize(in, readBufferSize)
	w.in = in
	w.watched = &watchedConn{Conn: conn}
	if sc, ok := conn.(syscall.Conn); ok {
		w.watched.raw, _ = sc.SyscallConn()
	}
	return in, bufio.NewReadWriter(in.br, bufio.NewWriterSize(w.watched, writeBufferSize)), nil
}

// Unwrap lets http.ResponseController reach the net/http writer.
func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
