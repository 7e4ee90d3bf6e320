// Package auth verifies the gateway's bearer tokens: HS256 JWTs whose claims
// say which client id a caller may act as and which outputs it may watch.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify. Each maps to an HTTP status: ErrMissing, ErrInvalid and
// ErrExpired to 401.
var (
	ErrMissing = errors.New("missing token")
	ErrInvalid = errors.New("invalid token")
	ErrExpired = errors.New("token expired")
)

// AllOutputs in Claims.Outputs allows every output.
const AllOutputs = "*"

// Claims are a token's claims: exp (required), sub (the client id the
// caller may act as; empty means any) and outputs (the output ids it may
// watch; "*" means all).
type Claims struct {
	jwt.RegisteredClaims
	Outputs []string `json:"outputs"`
}

// Verifier checks tokens signed with one HS256 secret. It is safe for
// concurrent use.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// MinSecret is the shortest HS256 secret NewVerifier takes, in bytes: a
// key of at least the hash's size (RFC 7518, section 3.2).
const MinSecret = 32

// NewVerifier returns a Verifier for secret, which must be at least
// MinSecret bytes.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("jwt secret is %d bytes; HS256 needs at least %d (RFC 7518, section 3.2): use 32 random bytes, e.g. openssl rand -base64 32", len(secret), MinSecret)
	}
	return &Verifier{
		secret: secret,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()),
	}, nil
}

// Verify parses and checks token. Errors wrap ErrMissing, ErrInvalid or
// ErrExpired and say what was wrong.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: send a JWT in the Authorization: Bearer header or the token query parameter", ErrMissing)
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	default:
		return nil, fmt.Errorf("%w: %v (want an HS256 JWT with exp)", ErrInvalid, err)
	}
}

// Token returns the token of r: the Authorization bearer token, else the
// token query parameter, else "".
func Token(r *http.Request) string { return TokenParam(r, "token") }

// TokenParam is Token with the query parameter param instead of token
// ("" reads the Authorization header only).
func TokenParam(r *http.Request, param string) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		if t, ok := strings.CutPrefix(h, "bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	if param == "" {
		return ""
	}
	return r.URL.Query().Get(param)
}

// AllOutputs reports whether the claims allow every output.
func (c *Claims) AllOutputs() bool { return slices.Contains(c.Outputs, AllOutputs) }

// MayWatch reports whether the claims allow output oid.
func (c *Claims) MayWatch(oid string) bool {
	return c.AllOutputs() || slices.Contains(c.Outputs, oid)
}

// Expiry is when the token expires; the zero time if it has no exp.
func (c *Claims) Expiry() time.Time {
	if c.ExpiresAt == nil {
		return time.Time{}
	}
	return c.ExpiresAt.Time
}
