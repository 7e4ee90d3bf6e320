package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("test-secret-of-32-bytes-or-more!")

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// craft builds a token with any header, signed with HMAC-SHA256 over key
// whatever the header says (as an attacker would).
func craft(t testing.TB, header, claims map[string]any, key []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	unsigned := enc(header) + "." + enc(claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestNewVerifier(t *testing.T) {
	if _, err := NewVerifier(nil); err == nil {
		t.Fatal("empty secret: got no error; want one")
	}
}

func TestVerify(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	good := jwt.MapClaims{"exp": exp, "sub": "alice", "outputs": []string{"o1", "o2"}}
	tests := []struct {
		name    string
		token   string
		want    error // nil: valid
		sub     string
		outputs []string
	}{
		{"valid", sign(t, jwt.SigningMethodHS256, secret, good), nil, "alice", []string{"o1", "o2"}},
		{"valid all outputs no sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": exp, "outputs": []string{"*"}}), nil, "", []string{"*"}},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), ErrExpired, "", nil},
		{"missing exp", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "outputs": []string{"*"}}), ErrInvalid, "", nil},
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("other-secret"), good), ErrInvalid, "", nil},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), ErrInvalid, "", nil},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, good), ErrInvalid, "", nil},
		{"RS256 header, HMAC signature", craft(t, map[string]any{"alg": "RS256", "typ": "JWT"}, map[string]any{"exp": exp, "outputs": []string{"*"}}, secret), ErrInvalid, "", nil},
		{"exp not a number", craft(t, map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"exp": "tomorrow"}, secret), ErrInvalid, "", nil},
		{"outputs not a list", craft(t, map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"exp": exp, "outputs": "*"}, secret), ErrInvalid, "", nil},
		{"garbage", "not.a.jwt", ErrInvalid, "", nil},
		{"two parts", "abc.def", ErrInvalid, "", nil},
		{"empty", "", ErrMissing, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.token)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v; want an error wrapping %v", err, tt.want)
				}
				if c != nil {
					t.Fatalf("got claims %+v with the error; want nil", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v; want valid", err)
			}
			if c.Subject != tt.sub {
				t.Errorf("sub: got %q; want %q", c.Subject, tt.sub)
			}
			if strings.Join(c.Outputs, ",") != strings.Join(tt.outputs, ",") {
				t.Errorf("outputs: got %q; want %q", c.Outputs, tt.outputs)
			}
			if got := c.Expiry().Unix(); got != exp {
				t.Errorf("expiry: got %d; want %d", got, exp)
			}
		})
	}
}

func TestMayWatch(t *testing.T) {
	tests := []struct {
		name    string
		outputs []string
		oid     string
		want    bool
	}{
		{"listed", []string{"a", "b"}, "b", true},
		{"not listed", []string{"a", "b"}, "c", false},
		{"all", []string{AllOutputs}, "anything", true},
		{"all among others", []string{"a", AllOutputs}, "z", true},
		{"none", nil, "a", false},
		{"prefix is not a match", []string{"ab"}, "a", false},
		{"pattern is not a wildcard", []string{"a*"}, "ab", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Claims{Outputs: tt.outputs}
			if got := c.MayWatch(tt.oid); got != tt.want {
				t.Fatalf("MayWatch(%q) with outputs %q: got %v; want %v", tt.oid, tt.outputs, got, tt.want)
			}
		})
	}
}

func TestToken(t *testing.T) {
	tests := []struct {
		name, header, url, want string
	}{
		{"bearer header", "Bearer abc", "/", "abc"},
		{"lower-case bearer", "bearer abc", "/", "abc"},
		{"header wins over query", "Bearer abc", "/?token=def", "abc"},
		{"query", "", "/?token=def", "def"},
		{"other scheme falls back to query", "Basic xyz", "/?token=def", "def"},
		{"none", "", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.url, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if got := Token(r); got != tt.want {
				t.Fatalf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// FuzzParseToken: any string is either a valid, unexpired HS256 token of
// the secret, or refused with one of Verify's errors; never a panic.
func FuzzParseToken(f *testing.F) {
	exp := time.Now().Add(time.Hour).Unix()
	for _, s := range []string{
		"", "a.b.c", "not.a.jwt", "...", "eyJhbGciOiJIUzI1NiJ9..",
		sign(f, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": exp, "outputs": []string{"*"}}),
		sign(f, jwt.SigningMethodHS512, secret, jwt.MapClaims{"exp": exp}),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"exp": exp}),
		craft(f, map[string]any{"alg": "HS256"}, map[string]any{"exp": exp, "outputs": []any{1, nil}}, secret),
	} {
		f.Add(s)
	}
	v, err := NewVerifier(secret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
				t.Fatalf("got error %v; want one wrapping ErrMissing, ErrInvalid or ErrExpired", err)
			}
			if c != nil {
				t.Fatalf("got claims %+v with error %v; want nil", c, err)
			}
			return
		}
		if c.Expiry().IsZero() || !c.Expiry().After(time.Now().Add(-time.Minute)) {
			t.Fatalf("accepted a token expiring %v; want a future exp", c.Expiry())
		}
		if parts := strings.Split(token, "."); len(parts) != 3 {
			t.Fatalf("accepted %q with %d parts; want 3", token, len(parts))
		}
	})
}

func TestNewVerifierRefusesShortSecrets(t *testing.T) {
	for _, n := range []int{0, 1, MinSecret - 1} {
		if _, err := NewVerifier(make([]byte, n)); err == nil {
			t.Errorf("NewVerifier with a %d-byte secret: got nil error; want a refusal", n)
		}
	}
	if _, err := NewVerifier(make([]byte, MinSecret)); err != nil {
		t.Errorf("NewVerifier with a %d-byte secret: got %v; want nil", MinSecret, err)
	}
}
