package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/wire"
)

const jwtSecret = "integration-secret-of-32-bytes-ok"

// mint returns an HS256 token with the given claims signed with secret.
func mint(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokens: the gateway refuses every bad token before upgrading, and
// accepts a good one.
func TestTokens(t *testing.T) {
	s := newStack(t, stackOptions{})
	gw := s.env.StartGateway("gw-auth", s.nats.URL(), "--jwt-secret="+jwtSecret)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exp := time.Now().Add(time.Hour).Unix()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"exp": exp, "outputs": []string{"*"}}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		token    string
		clientID string
		ok       bool
	}{
		{"missing", "", "", false},
		{"expired", mint(t, jwtSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix(), "outputs": []string{"a"}}), "", false},
		{"no exp", mint(t, jwtSecret, jwt.MapClaims{"outputs": []string{"a"}}), "", false},
		{"badly signed", mint(t, "other-secret", jwt.MapClaims{"exp": exp, "outputs": []string{"a"}}), "", false},
		{"alg none", none, "", false},
		{"garbage", "not.a.jwt", "", false},
		{"wrong output", mint(t, jwtSecret, jwt.MapClaims{"exp": exp, "outputs": []string{"b"}}), "", false},
		{"wrong client id", mint(t, jwtSecret, jwt.MapClaims{"exp": exp, "outputs": []string{"a"}, "sub": "alice"}), "mallory", false},
		{"right output", mint(t, jwtSecret, jwt.MapClaims{"exp": exp, "outputs": []string{"a"}}), "", true},
		{"right client id", mint(t, jwtSecret, jwt.MapClaims{"exp": exp, "outputs": []string{"a"}, "sub": "alice"}), "alice", true},
		{"every output", mint(t, jwtSecret, jwt.MapClaims{"exp": exp, "outputs": []string{"*"}}), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial(ctx, client.Config{URL: gw.URL, OutputID: "a", ClientID: tc.clientID, Token: tc.token})
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatal("dial: got no error; want a refusal")
				}
				if !errors.Is(err, client.ErrRejected) {
					t.Errorf("dial: got %v; want an error wrapping ErrRejected", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: got %v; want success", err)
			}
			defer c.Close()
			expectControl(t, ctx, c, wire.TypeHello)
		})
	}
}

// TestCraftedIDs: ids built to change a subject's shape (dots, wildcards,
// escapes, the broadcast token) only ever reach their own frames, and
// non-ASCII look-alikes are refused by both services.
func TestCraftedIDs(t *testing.T) {
	s := newStack(t, stackOptions{})
	gw := s.gateways[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := ledger.New(scenarioName(t))

	crafted := []struct{ oid, cid string }{
		{"a.b", ""}, {"*", ""}, {">", ""}, {"a.*", ""}, {"a.>", ""}, {"%2E", ""}, {"a%2Eb", ""},
		{"~all", ""}, {"a~2Eb", ""}, {"a b", ""}, {"a", "*"}, {"a", ">"}, {"a", "~all"}, {"a", "victim.x"},
		{"a", "%2A"}, {"a", "victim "},
	}
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i, c := range crafted {
		cfg := client.Config{OutputID: c.oid, ClientID: c.cid, Since: u64(0)}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("crafted%d(%q,%q)", i, c.oid, c.cid), []string{gw.URL}, cfg))
	}
	victim := watch(t, wctx, l, "victim", []string{gw.URL}, client.Config{OutputID: "a", ClientID: "victim", Since: u64(0)})
	ws = append(ws, victim)
	waitHello(t, ctx, ws)

	// Every crafted id also publishes, so each one's own frames exist, next
	// to frames for the plain output "a", "b", and a targeted client.
	pub := newPublisher(s.producer.URL, l)
	targets := [][2]string{{"a", ""}, {"b", ""}, {"a", "victim"}, {"a", ""}}
	for _, c := range crafted {
		targets = append(targets, [2]string{c.oid, c.cid})
	}
	for range 3 {
		for _, tg := range targets {
			if _, err := pub.publish(ctx, tg[0], tg[1], true); err != nil {
				t.Fatalf("publish to %q/%q: %v", tg[0], tg[1], err)
			}
		}
	}
	finish(t, ctx, l)
	stopWatchers(t, wcancel, ws)

	// Non-ASCII look-alikes of '.' are refused, by the producer and by
	// the gateway, with a message naming what is allowed.
	for _, id := range []string{"a\u2024b", "a\uff0eb", "caf\u00e9"} {
		t.Run(fmt.Sprintf("refused %q", id), func(t *testing.T) {
			_, status, err := pub.attempt(ctx, s.producer.URL+"/v1/outputs/"+url.PathEscape(id)+"/images?file_type=png&width=4&height=1&channels=3&dtype=uint8", "k-"+id, ledger.Pixels(1, 4, 1))
			if status != http.StatusBadRequest {
				t.Errorf("producer: got HTTP %d (%v); want 400", status, err)
			}
			for _, q := range []string{"output_id=" + url.QueryEscape(id), "output_id=a&client_id=" + url.QueryEscape(id)} {
				ws, resp, err := websocket.Dial(ctx, "ws"+gw.URL[len("http"):]+"/v1/ws?"+q, nil)
				if err == nil {
					ws.CloseNow()
				}
				if resp == nil || resp.StatusCode != http.StatusBadRequest {
					t.Errorf("gateway %s: got %v (%v); want HTTP 400", q, statusOf(resp), err)
				}
			}
		})
	}
}

func statusOf(r *http.Response) string {
	if r == nil {
		return "no response"
	}
	return r.Status
}

// TestForbiddenOrigin: a browser page from another origin cannot open a
// socket; an allowed one can.
func TestForbiddenOrigin(t *testing.T) {
	s := newStack(t, stackOptions{gateway: []string{"--allowed-origins=app.example.com"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := []struct {
		origin string
		ok     bool
	}{
		{"https://evil.example.net", false},
		{"https://app.example.com.evil.net", false},
		{"https://app.example.com", true},
	}
	for _, tc := range tests {
		t.Run(tc.origin, func(t *testing.T) {
			c, err := client.Dial(ctx, client.Config{URL: s.gateways[0].URL, OutputID: "a", Header: http.Header{"Origin": {tc.origin}}})
			if tc.ok {
				if err != nil {
					t.Fatalf("dial: got %v; want success", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("dial: got no error; want 403")
			}
			if !errors.Is(err, client.ErrRejected) {
				t.Errorf("dial: got %v; want a 403 refusal", err)
			}
		})
	}
}

// TestOversizedClientMessage: a client message past the gateway's read
// limit closes the socket with 1009.
func TestOversizedClientMessage(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+s.gateways[0].URL[len("http"):]+"/v1/ws?output_id=a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // hello
		t.Fatal(err)
	}
	_ = ws.Write(ctx, websocket.MessageText, make([]byte, 1<<20))
	for {
		_, _, err := ws.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
			t.Errorf("close: got %v (%v); want %d", got, err, websocket.StatusMessageTooBig)
		}
		return
	}
}

// natsPasswords are the users' passwords for deploy/nats/accounts.conf,
// which reads them from the NATS server's environment.
var natsPasswords = map[string]string{
	"admin":    "admin-test-pass",
	"producer": "producer-test-pass",
	"gateway":  "gateway-test-pass",
	"leaf":     "leaf-test-pass",
	"sys":      "sys-test-pass",
}

// deployedAccounts is deploy/nats/accounts.conf, the users every deployment
// runs with, and the environment it needs.
func deployedAccounts(t testing.TB) (conf string, env []string) {
	t.Helper()
	root, err := topo.WorkspaceRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for user, pass := range natsPasswords {
		env = append(env, "FRAMECAST_NATS_"+strings.ToUpper(user)+"_PASSWORD="+pass)
	}
	return string(b), env
}

// permInlineLimit is the producer's --inline-limit in TestNATSPermissions:
// larger images go through the OUTPUTS_LARGE bucket.
const permInlineLimit = 16 << 10

// TestNATSPermissions: with the NATS users of deploy/nats/accounts.conf,
// the admin user ensures the stream, and the producer and the gateway work
// with their own rights only, for frames sent inline and by reference
// through the large-frame bucket; the producer's user cannot read frames,
// and the gateway's user can neither publish frames nor write the bucket.
// The gateway, leaf and producer users are refused every request that
// creates, updates, deletes or purges either stream, and nothing changes;
// the admin user can make each of them.
func TestNATSPermissions(t *testing.T) {
	conf, env := deployedAccounts(t)
	s := newStack(t, stackOptions{
		natsAuth: conf,
		natsEnv:  env,
		// The test's user ensures the stream before the services start.
		natsAdmin:    [2]string{"admin", natsPasswords["admin"]},
		producerUser: [2]string{"producer", natsPasswords["producer"]},
		gatewayUser:  [2]string{"gateway", natsPasswords["gateway"]},
		producer:     []string{fmt.Sprintf("--inline-limit=%d", permInlineLimit)},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Frames flow end to end with the restricted users: small ones inline,
	// large ones (noise, so they stay large as PNG) through the bucket, in
	// one chunk and in several.
	live := dial(t, ctx, client.Config{URL: s.gateways[0].URL, OutputID: "perm"})
	defer live.Close()
	expectControl(t, ctx, live, wire.TypeHello)
	sizes := []int{8, 96, 8, 256, 8, 96}
	var sent []sentFrame
	large := 0
	for i, side := range sizes {
		img := ledger.PNG(uint64(i+1), side, side)
		if len(img) > permInlineLimit {
			large++
		}
		key := fmt.Sprintf("perm-%d", i)
		seq := postPNG(t, ctx, s.producer.URL, "perm", key, img)
		sent = append(sent, sentFrame{seq: seq, image: img})
		if i == 3 {
			// A retry of a large frame finds its image and its frame
			// stored (the producer looks the object up first).
			if again := postPNG(t, ctx, s.producer.URL, "perm", key, img); again != seq {
				t.Errorf("retry of %s: got seq %d; want the first attempt's %d", key, again, seq)
			}
		}
	}
	if large < 2 {
		t.Fatalf("%d frames above the inline limit %d; want at least 2", large, permInlineLimit)
	}
	expectFrames(t, ctx, "live", live, sent)
	replay := dial(t, ctx, client.Config{URL: s.gateways[0].URL, OutputID: "perm", Since: u64(0)})
	defer replay.Close()
	expectControl(t, ctx, replay, wire.TypeHello)
	expectFrames(t, ctx, "replay", replay, sent)

	// The large ones really went through the bucket: a chunk and a
	// metadata message each, at least.
	nc := connectAs(t, s, "gateway", nil)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := js.Stream(ctx, "OBJ_OUTPUTS_LARGE")
	if err != nil {
		t.Fatalf("bucket stream info as the gateway: %v", err)
	}
	if got := bucket.CachedInfo().State.Msgs; got < uint64(2*large) {
		t.Errorf("bucket messages: got %d; want at least %d (%d large frames)", got, 2*large, large)
	}

	tests := []struct {
		name, user string
		act        func(nc *nats.Conn) error
	}{
		{"producer subscribes to frames", "producer", func(nc *nats.Conn) error {
			_, err := nc.SubscribeSync("outputs.>")
			return err
		}},
		{"producer subscribes to live frames", "producer", func(nc *nats.Conn) error {
			_, err := nc.SubscribeSync("live.outputs.>")
			return err
		}},
		{"gateway publishes a frame", "gateway", func(nc *nats.Conn) error {
			return nc.Publish("outputs.perm.~all", []byte("forged"))
		}},
		{"gateway publishes a live frame", "gateway", func(nc *nats.Conn) error {
			return nc.Publish("live.outputs.perm.~all", []byte("forged"))
		}},
		{"gateway publishes an image chunk", "gateway", func(nc *nats.Conn) error {
			return nc.Publish("$O.OUTPUTS_LARGE.C.forged", []byte("forged"))
		}},
		{"gateway publishes image metadata", "gateway", func(nc *nats.Conn) error {
			return nc.Publish("$O.OUTPUTS_LARGE.M.cGVybS0z", []byte("{}"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectRefused(t, ctx, s, tc.user, tc.act)
		})
	}

	// Stream changes: a request to create or update either stream with a
	// 1 MiB limit (a purge in effect), to delete it or to purge it, as
	// each service user, is refused before it reaches JetStream. The leaf
	// user is tried with the API names of the hub's domain too, which
	// leaf.conf maps its clients' requests to.
	admin := connectAs(t, s, "admin", nil)
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	deployed := stream.Config{Replicas: 1}
	before := streamMsgs(t, ctx, ajs)
	tiny, err := stream.Config{MaxBytes: 1 << 20}.StreamConfig()
	if err != nil {
		t.Fatal(err)
	}
	prefixes := map[string][]string{
		"gateway":  {"$JS.API."},
		"producer": {"$JS.API."},
		"leaf":     {"$JS.API.", "$JS.hub.API."},
	}
	for _, user := range []string{"gateway", "leaf", "producer"} {
		for _, prefix := range prefixes[user] {
			for _, name := range []string{"OUTPUTS", "OBJ_OUTPUTS_LARGE"} {
				tiny.Name = name
				body, err := json.Marshal(tiny)
				if err != nil {
					t.Fatal(err)
				}
				for _, op := range []string{"CREATE", "UPDATE", "DELETE", "PURGE"} {
					subj := prefix + "STREAM." + op + "." + name
					t.Run(user+" "+subj, func(t *testing.T) {
						expectRefused(t, ctx, s, user, func(nc *nats.Conn) error {
							return nc.PublishRequest(subj, nats.NewInbox(), body)
						})
					})
				}
			}
		}
	}
	if _, err := stream.Verify(ctx, ajs, deployed); err != nil {
		t.Errorf("after the refused requests: %v; want the streams as ensured", err)
	}
	if after := streamMsgs(t, ctx, ajs); after != before {
		t.Errorf("messages after the refused requests: got %v; want %v, as before", after, before)
	}

	// The admin user can make each change: update, purge (of a subject
	// that holds nothing), delete, create.
	t.Run("admin updates", func(t *testing.T) {
		longer := stream.Config{Replicas: 1, MaxAge: 30 * time.Minute}
		if _, err := stream.Ensure(ctx, ajs, longer); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Verify(ctx, ajs, longer); err != nil {
			t.Fatalf("after the update: %v", err)
		}
	})
	t.Run("admin purges", func(t *testing.T) {
		for name, subj := range map[string]string{"OUTPUTS": "outputs.none.~all", "OBJ_OUTPUTS_LARGE": "$O.OUTPUTS_LARGE.C.none"} {
			st, err := ajs.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
				t.Errorf("purge %s of %s: %v", name, subj, err)
			}
		}
	})
	t.Run("admin deletes and creates", func(t *testing.T) {
		for _, name := range []string{"OUTPUTS", "OBJ_OUTPUTS_LARGE"} {
			if err := ajs.DeleteStream(ctx, name); err != nil {
				t.Fatalf("delete %s: %v", name, err)
			}
		}
		if _, err := stream.Verify(ctx, ajs, deployed); !errors.Is(err, stream.ErrMissing) {
			t.Fatalf("after the deletes: got %v; want both streams missing", err)
		}
		if _, err := stream.Ensure(ctx, ajs, deployed); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Verify(ctx, ajs, deployed); err != nil {
			t.Fatalf("after the create: %v", err)
		}
	})
}

// expectRefused connects as user, runs act, and waits up to 10s for NATS
// to report a permissions violation (its own bound, so that one request
// let through does not use up the wait of the others).
func expectRefused(t *testing.T, ctx context.Context, s *stack, user string, act func(nc *nats.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var asyncErr error
	got := make(chan struct{}, 1)
	nc := connectAs(t, s, user, func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		asyncErr = err
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	})
	if err := act(nc); err != nil && !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no permissions violation reported")
	}
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(asyncErr, nats.ErrPermissionViolation) {
		t.Errorf("error: got %v; want nats.ErrPermissionViolation", asyncErr)
	}
}

// streamMsgs is the message count of the stream and of the bucket's.
func streamMsgs(t *testing.T, ctx context.Context, js jetstream.JetStream) [2]uint64 {
	t.Helper()
	var n [2]uint64
	for i, name := range []string{"OUTPUTS", "OBJ_OUTPUTS_LARGE"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		n[i] = st.CachedInfo().State.Msgs
	}
	return n
}

// connectAs connects to the stack's NATS as user (a user of natsPasswords);
// the connection is closed at cleanup.
func connectAs(t testing.TB, s *stack, user string, onErr nats.ErrHandler) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.UserInfo(user, natsPasswords[user])}
	if onErr != nil {
		opts = append(opts, nats.ErrorHandler(onErr))
	}
	nc, err := nats.Connect(s.nats.URL(), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// sentFrame is an image the producer acknowledged with seq.
type sentFrame struct {
	seq   uint64
	image []byte
}

// postPNG publishes an encoded PNG to output oid with Idempotency-Key key
// and returns the frame's sequence.
func postPNG(t testing.TB, ctx context.Context, producer, oid, key string, img []byte) uint64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, producer+"/v1/outputs/"+url.PathEscape(oid)+"/images", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "image/png")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var r struct {
		Frames []struct {
			Seq   uint64 `json:"seq"`
			Bytes int    `json:"bytes"`
		} `json:"frames"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish %s (%d bytes): got HTTP %d %s; want 200", key, len(img), resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Frames) != 1 || r.Frames[0].Seq == 0 {
		t.Fatalf("publish %s: answer %s; want one frame with a seq (%v)", key, b, err)
	}
	if r.Frames[0].Bytes != len(img) {
		t.Fatalf("publish %s: got %d bytes stored; want the %d posted (no re-encoding)", key, r.Frames[0].Bytes, len(img))
	}
	return r.Frames[0].Seq
}

// expectFrames reads len(want) frames from c and checks they are want's,
// in order, byte for byte.
func expectFrames(t testing.TB, ctx context.Context, name string, c *client.Conn, want []sentFrame) {
	t.Helper()
	for _, w := range want {
		m, err := next(ctx, c)
		if err != nil {
			t.Fatalf("%s: want frame %d: %v", name, w.seq, err)
		}
		f, ok := m.(*client.Frame)
		if !ok {
			t.Fatalf("%s: message: got %s; want frame %d", name, describe(m), w.seq)
		}
		if f.Seq != w.seq {
			t.Fatalf("%s: frame seq: got %d; want %d", name, f.Seq, w.seq)
		}
		if !bytes.Equal(f.Image, w.image) {
			t.Errorf("%s: frame %d: got %d bytes; want the %d published, byte for byte", name, w.seq, len(f.Image), len(w.image))
		}
	}
}

// TestCraftedComfyClientIDs: on the ComfyDeploy endpoint, whose
// subscriptions use a wildcard for the output, client ids built to widen
// the subject (*, >, the broadcast token, dots) get broadcast frames only,
// never frames sent to another client id.
func TestCraftedComfyClientIDs(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := newPublisher(s.producer.URL, ledger.New(scenarioName(t)))
	for _, cid := range []string{"*", ">", "~all", "victim.>", "~2A", "%2A"} {
		t.Run(cid, func(t *testing.T) {
			c := dial(t, ctx, client.Config{URL: s.gateways[0].URL, ComfyDeploy: true, ClientID: cid})
			defer c.Close()
			if st := expectControl(t, ctx, c, client.TypeStatus); st.SID != cid {
				t.Errorf("status sid: got %q; want %q", st.SID, cid)
			}
			// Targeted frames first, then broadcast ones: frames reach a
			// socket in stream order, so once the last broadcast frame is
			// in, any leaked targeted frame would have come before it.
			targeted := map[uint64]bool{}
			for _, to := range []string{"victim", "x"} {
				f, err := pub.publish(ctx, "a", to, true)
				if err != nil {
					t.Fatal(err)
				}
				targeted[f.ID] = true
			}
			want := map[uint64]bool{}
			for _, oid := range []string{"a", "b"} {
				f, err := pub.publish(ctx, oid, "", true)
				if err != nil {
					t.Fatal(err)
				}
				want[f.ID] = true
			}
			for len(want) > 0 {
				m, err := next(ctx, c)
				if err != nil {
					t.Fatalf("read: %v (still waiting for %d broadcast frames)", err, len(want))
				}
				f, ok := m.(*client.Frame)
				if !ok {
					continue
				}
				id, err := ledger.ID(f.Image)
				if err != nil {
					t.Fatal(err)
				}
				if targeted[id] {
					t.Errorf("client id %q got frame %d sent to another client", cid, id)
				}
				delete(want, id)
			}
		})
	}
}
