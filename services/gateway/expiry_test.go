package gateway

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/framecast/framecast/shared/wire"
)

// TestExpiryDuringReplay: a token that expires while its connection is
// replaying gets no frame after the one being written, then 1008.
func TestExpiryDuringReplay(t *testing.T) {
	ns := testNATS(t)
	srv, hs := testGateway(t, ns, func(c *Config) {
		c.AllowAnonymous = false
		c.JWTSecret = testSecret
		c.WriteTimeout = time.Minute
	})
	p := newPublisher(t, ns)

	// The second frame (6 MiB) cannot pass the stalled client's socket
	// buffers: the replay is held writing it until the client reads.
	var mine []uint64
	for i := range 50 {
		b := make([]byte, 4<<10)
		if i == 1 {
			b = make([]byte, 6<<20)
		}
		mine = append(mine, p.publish("o", "", b))
	}
	exp := time.Now().Add(2 * time.Second)
	tok := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": exp.Unix(), "outputs": []string{"o"}})
	c := smallWindowDial(t, hs.URL, "/v1/ws?output_id=o&since=0&token="+tok)
	readControl(t, c, wire.TypeHello)
	got := readFrames(t, c, 1)

	for !sessionsExpired(srv) {
		time.Sleep(10 * time.Millisecond)
	}
	for {
		m, err := tryRead(c)
		if err != nil {
			if code := closeStatus(err); code != wire.ClosePolicy {
				t.Fatalf("close: got %v (%v); want %d", code, err, wire.ClosePolicy)
			}
			break
		}
		if m.text {
			t.Fatalf("got control %s after the token expired; want the close", m.raw)
		}
		got = append(got, m.hdr)
	}
	checkSeqs(t, got, mine[:2])
}

// sessionsExpired reports whether srv has sessions and every one saw its
// token expire.
func sessionsExpired(srv *Server) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	n := 0
	for ss := range srv.sessions {
		ss.mu.Lock()
		expired := ss.expired
		ss.mu.Unlock()
		if !expired {
			return false
		}
		n++
	}
	return n > 0
}
