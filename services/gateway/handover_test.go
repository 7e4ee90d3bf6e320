package gateway

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// TestLiveOnlyHeldOverflow: frames larger than the send queue published
// while live-only connections start overflow the held buffer before the
// hand-over; every connection still goes live and gets frames.
func TestLiveOnlyHeldOverflow(t *testing.T) {
	ns := testNATS(t)
	_, hs := testGateway(t, ns, func(c *Config) { c.CacheBytes = 1 << 20 })
	p := newPublisher(t, ns)

	big := bytes.Repeat([]byte{7}, 100<<10) // a tenth of the cache: the rings evict while connections start
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	pubs.Add(1)
	go func() {
		defer pubs.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := p.tryPublish("o", "", big); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); pubs.Wait() }()

	const clients = 20
	errs := make(chan string, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(context.Background(), wsURL(hs.URL, "/v1/ws?output_id=o"), nil)
			if err != nil {
				errs <- "dial: " + err.Error()
				return
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			// A connection stuck before going live never gets a frame;
			// the deadline only ends the wait.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			for {
				typ, b, err := c.Read(ctx)
				if err != nil {
					errs <- "no frame after the hello: " + err.Error()
					return
				}
				if typ == websocket.MessageBinary {
					if _, _, err := wire.DecodeNative(b); err != nil {
						errs <- "bad frame: " + err.Error()
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("client: got %s; want a live frame", e)
	}
}
