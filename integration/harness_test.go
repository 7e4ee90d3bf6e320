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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/wire"
)

// publisher sends id-carrying frames through a producer's HTTP API and
// records every acknowledged one in its ledger. Its methods are safe for
// concurrent use.
type publisher struct {
	url    string // producer base URL
	ledger *ledger.Ledger
	// width and height of each frame; default ledger.MinWidth x 1.
	width, height int
	http          *http.Client
	next          atomic.Uint64

	mu       sync.Mutex
	statuses map[int]int // HTTP status -> count, over every attempt
	errs     int         // attempts that got no HTTP answer
	epoch    string      // the stream epoch acknowledged frames are stored in; "" untracked
	// answered, when set, is called after every attempt that got an HTTP
	// answer, with the time its request was sent.
	answered func(sent time.Time, resp *http.Response)
}

func newPublisher(url string, l *ledger.Ledger) *publisher {
	return &publisher{url: url, ledger: l, http: &http.Client{Timeout: 10 * time.Second}, statuses: map[int]int{},
		width: ledger.MinWidth, height: 1}
}

// errNotAcked is returned by publish when the producer did not answer 200.
var errNotAcked = errors.New("frame not acknowledged")

// publish sends one new frame to (oid, cid). With retry it repeats the
// request with the same Idempotency-Key until the producer answers 200 or
// ctx ends; without, it tries once.
func (p *publisher) publish(ctx context.Context, oid, cid string, retry bool) (ledger.Frame, error) {
	id := p.next.Add(1)
	q := url.Values{
		"file_type": {"png"}, "width": {strconv.Itoa(p.width)}, "height": {strconv.Itoa(p.height)},
		"channels": {strconv.Itoa(ledger.Channels)}, "dtype": {"uint8"},
	}
	if cid != "" {
		q.Set("client_id", cid)
	}
	u := p.url + "/v1/outputs/" + url.PathEscape(oid) + "/images?" + q.Encode()
	body := ledger.Pixels(id, p.width, p.height)
	key := fmt.Sprintf("frame-%d", id)
	for {
		seq, status, err := p.attempt(ctx, u, key, body)
		if err == nil {
			p.mu.Lock()
			f := ledger.Frame{ID: id, Seq: seq, OutputID: oid, ClientID: cid, Epoch: p.epoch}
			p.mu.Unlock()
			p.ledger.Ack(f)
			return f, nil
		}
		if !retry {
			return ledger.Frame{}, err
		}
		_ = status
		select {
		case <-ctx.Done():
			return ledger.Frame{}, fmt.Errorf("frame %d: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *publisher) attempt(ctx context.Context, u, key string, body []byte) (seq uint64, status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Idempotency-Key", key)
	sent := time.Now()
	resp, err := p.http.Do(req)
	if err != nil {
		p.mu.Lock()
		p.errs++
		p.mu.Unlock()
		return 0, 0, err
	}
	defer resp.Body.Close()
	if p.answered != nil {
		p.answered(sent, resp)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	p.mu.Lock()
	p.statuses[resp.StatusCode]++
	p.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		return 0, resp.StatusCode, fmt.Errorf("%w: HTTP %d: %s", errNotAcked, resp.StatusCode, b)
	}
	var r struct {
		Frames []struct {
			Seq uint64 `json:"seq"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Frames) != 1 || r.Frames[0].Seq == 0 {
		return 0, resp.StatusCode, fmt.Errorf("producer answer %s: want one frame with a seq (%v)", b, err)
	}
	return r.Frames[0].Seq, resp.StatusCode, nil
}

// setEpoch says the frames acknowledged from now on are stored in stream
// epoch e.
func (p *publisher) setEpoch(e string) {
	p.mu.Lock()
	p.epoch = e
	p.mu.Unlock()
}

// Statuses is a copy of the HTTP status counts.
func (p *publisher) Statuses() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[int]int, len(p.statuses))
	for k, v := range p.statuses {
		m[k] = v
	}
	return m
}

// steady publishes frames at rate per second, cycling over targets, until
// ctx ends; it returns when the last request has finished. Errors of
// single requests are counted by the publisher, not returned: a frame that
// was not acknowledged is not owed to anyone.
func (p *publisher) steady(ctx context.Context, rate int, retry bool, targets [][2]string) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t := targets[i%len(targets)]
		if retry {
			// A retrying publisher blocks on its frame so a broker
			// outage does not pile up requests.
			p.publish(ctx, t[0], t[1], true)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.publish(ctx, t[0], t[1], false)
		}()
	}
}

// watcher is one client application: a client.Stream whose handler
// records what it saw in the ledger.
type watcher struct {
	rec   *ledger.Client
	hello chan struct{} // closed at the first hello
	done  chan error    // Run's result

	mu     sync.Mutex
	closes map[int]int // close code -> count
	resume uint64      // resume point at the last disconnect
	stream *client.Stream
}

// watch starts a Stream for cfg over urls; it stops when ctx ends. The
// ledger client wants every frame of cfg.OutputID that is broadcast or
// sent to cfg.ClientID.
func watch(t testing.TB, ctx context.Context, l *ledger.Ledger, name string, urls []string, cfg client.Config) *watcher {
	t.Helper()
	return watchHeld(t, ctx, l, name, urls, cfg, nil)
}

// watchHeld is watch for an application that stalls on its first frame
// until hold is closed (nil: never stalls).
func watchHeld(t testing.TB, ctx context.Context, l *ledger.Ledger, name string, urls []string, cfg client.Config, hold <-chan struct{}) *watcher {
	t.Helper()
	oid, cid := cfg.OutputID, cfg.ClientID
	w := &watcher{
		rec: l.Client(name, func(f ledger.Frame) bool {
			return f.OutputID == oid && (f.ClientID == "" || f.ClientID == cid)
		}),
		hello:  make(chan struct{}),
		done:   make(chan error, 1),
		closes: map[int]int{},
	}
	s, err := client.NewStream(client.StreamConfig{
		Config: cfg, URLs: urls,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		OnDisconnect: func(u string, err error, _ time.Duration) {
			code := int(websocket.CloseStatus(err))
			w.mu.Lock()
			w.closes[code]++
			w.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.stream = s
	var once sync.Once
	go func() {
		w.done <- s.Run(ctx, func(ctx context.Context, m client.Message) error {
			switch m := m.(type) {
			case *client.Frame:
				if hold != nil {
					select {
					case <-hold:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				id, err := ledger.ID(m.Image)
				if err != nil {
					return fmt.Errorf("frame %d: %w", m.Seq, err)
				}
				w.rec.Saw(ledger.Frame{ID: id, Seq: m.Seq, OutputID: m.Header.OutputID, ClientID: m.Header.ClientID})
			case *client.Control:
				switch m.Type {
				case wire.TypeHello:
					w.rec.Hello(m.Epoch)
					once.Do(func() { close(w.hello) })
				case wire.TypeGap:
					w.rec.Gap(m.From, m.To)
				case wire.TypeReset:
					w.rec.Reset(m.Epoch, *m.Since) // client.Conn refuses a reset without since
				}
			}
			return nil
		})
	}()
	return w
}

// closeCount is how many connections ended with close code code.
func (w *watcher) closeCount(code int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closes[code]
}

// closedWith is how many connections of ws ended with close code code.
func closedWith(ws []*watcher, code int) int {
	n := 0
	for _, w := range ws {
		n += w.closeCount(code)
	}
	return n
}

// waitHello waits until every watcher has had its first hello.
func waitHello(t testing.TB, ctx context.Context, ws []*watcher) {
	t.Helper()
	for i, w := range ws {
		select {
		case <-w.hello:
		case err := <-w.done:
			t.Fatalf("watcher %d ended before its hello: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("watcher %d: no hello: %v", i, ctx.Err())
		}
	}
}

// stopWatchers cancels the watchers' context and checks that each ended
// only because of it.
func stopWatchers(t testing.TB, cancel context.CancelFunc, ws []*watcher) {
	t.Helper()
	cancel()
	for i, w := range ws {
		if err := <-w.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("watcher %d (%s): Run: %v", i, w.rec.Name, err)
		}
	}
}

func u64(v uint64) *uint64 { return &v }

// metric reads the value of the first sample of name from the service's
// /metrics, or reports false.
func metric(ctx context.Context, url, name string) (float64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		return v, err == nil
	}
	return 0, false
}
