package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/framecast/framecast/shared/wire"
)

var testSecret = []byte("gateway-test-secret-of-32-bytes!")

func token(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestAuth(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, func(c *Config) {
		c.AllowAnonymous = false
		c.JWTSecret = testSecret
		c.AllowedOrigins = []string{"app.example.com"}
	})
	exp := time.Now().Add(time.Hour).Unix()
	good := jwt.MapClaims{"exp": exp, "sub": "alice", "outputs": []string{"o"}}
	tests := []struct {
		name   string
		path   string
		token  string
		header bool
		origin string
		want   int
	}{
		{"missing", "/v1/ws?output_id=o", "", false, "", 401},
		{"expired", "/v1/ws?output_id=o", token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix(), "outputs": []string{"*"}}), true, "", 401},
		{"no exp", "/v1/ws?output_id=o", token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"outputs": []string{"*"}}), true, "", 401},
		{"bad signature", "/v1/ws?output_id=o", token(t, jwt.SigningMethodHS256, []byte("other"), good), true, "", 401},
		{"alg none", "/v1/ws?output_id=o", token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), false, "", 401},
		{"garbage", "/v1/ws?output_id=o", "not.a.jwt", true, "", 401},
		{"wrong output", "/v1/ws?output_id=p", token(t, jwt.SigningMethodHS256, testSecret, good), true, "", 403},
		{"wrong sub", "/v1/ws?output_id=o&client_id=bob", token(t, jwt.SigningMethodHS256, testSecret, good), false, "", 403},
		{"comfy wrong sub", "/comfyui-deploy/ws?clientId=bob", token(t, jwt.SigningMethodHS256, testSecret, good), true, "", 403},
		{"forbidden origin", "/v1/ws?output_id=o", token(t, jwt.SigningMethodHS256, testSecret, good), true, "http://evil.example.net", 403},
		{"allowed origin", "/v1/ws?output_id=o", token(t, jwt.SigningMethodHS256, testSecret, good), true, "http://app.example.com", 101},
		{"query token", "/v1/ws?output_id=o&client_id=alice", token(t, jwt.SigningMethodHS256, testSecret, good), false, "", 101},
		{"comfy default sub", "/comfyui-deploy/ws", token(t, jwt.SigningMethodHS256, testSecret, good), true, "", 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			h := http.Header{}
			if tt.token != "" && tt.header {
				h.Set("Authorization", "Bearer "+tt.token)
			} else if tt.token != "" {
				path += "&token=" + tt.token
				if !strings.Contains(path, "?") {
					path = strings.Replace(path, "&", "?", 1)
				}
			}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			c, resp, err := websocket.Dial(context.Background(), wsURL(hs.URL, path), &websocket.DialOptions{HTTPHeader: h})
			got := 0
			if resp != nil {
				got = resp.StatusCode
			}
			if got != tt.want {
				t.Fatalf("status: got %d (%v); want %d", got, err, tt.want)
			}
			if c != nil {
				m := readMsg(t, c)
				if tt.name == "comfy default sub" && string(m.raw) != string(wire.Status("alice")) {
					t.Fatalf("comfy status: got %s; want sid alice", m.raw)
				}
				_ = c.CloseNow()
			}
		})
	}

	t.Run("token expires during connection", func(t *testing.T) {
		tok := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": time.Now().Add(1500 * time.Millisecond).Unix(), "outputs": []string{"*"}})
		c := dial(t, hs.URL, "/v1/ws?output_id=o&token="+tok, nil)
		readControl(t, c, wire.TypeHello)
		_, err := tryRead(c)
		if got := closeStatus(err); got != wire.ClosePolicy {
			t.Fatalf("close: got %v (%v); want %d", got, err, wire.ClosePolicy)
		}
	})
}

func TestOversizedClientMessage(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, nil)
	c := dial(t, hs.URL, "/v1/ws?output_id=o", nil)
	readControl(t, c, wire.TypeHello)
	if err := c.Write(context.Background(), websocket.MessageText, []byte("small is fine")); err != nil {
		t.Fatal(err)
	}
	_ = c.Write(context.Background(), websocket.MessageText, make([]byte, NativeReadLimit+1))
	_, err := tryRead(c)
	if got := closeStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("close: got %v (%v); want %d", got, err, websocket.StatusMessageTooBig)
	}
}

// TestComfyTokenParam: with --comfy-token-param set, the ComfyDeploy
// endpoint reads its JWT from that parameter and leaves the app's own
// token= alone.
func TestComfyTokenParam(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, func(c *Config) {
		c.AllowAnonymous = false
		c.JWTSecret = testSecret
		c.ComfyTokenParam = "fc_token"
	})
	good := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "outputs": []string{"*"}})
	tests := []struct {
		name, query string
		want        int
	}{
		{"app token and ours", "?clientId=a&token=app-own-token&fc_token=" + good, 101},
		{"app token only", "?clientId=a&token=" + good, 401},
		{"ours only", "?clientId=a&fc_token=" + good, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := websocket.Dial(context.Background(), wsURL(hs.URL, "/comfyui-deploy/ws"+tt.query), nil)
			got := 101
			if err != nil {
				got = resp.StatusCode
			} else {
				c.CloseNow()
			}
			if got != tt.want {
				t.Fatalf("got %d (%v); want %d", got, err, tt.want)
			}
		})
	}
	if _, err := New(context.Background(), Config{AllowAnonymous: true, ComfyTokenParam: "a b"}); err == nil {
		t.Fatal("comfy token param \"a b\": got no error")
	}
}
