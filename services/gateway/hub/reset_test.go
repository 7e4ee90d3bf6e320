package hub

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/stream"
	"github.com/framecast/framecast/shared/subject"
)

// events records what a subscriber was told, in order. The first Missed
// of the recorders sharing block then waits for wait, holding Reset there.
type events struct {
	mu    sync.Mutex
	log   []string
	got   chan struct{} // receives on every event
	block *sync.Once
	sent  chan struct{} // shared: receives on every Deliver
	enter chan struct{}
	wait  chan struct{}
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
	e.got <- struct{}{}
}

func (e *events) Deliver(f *Frame) {
	e.add("deliver")
	e.sent <- struct{}{}
}

func (e *events) Missed() {
	e.add("missed")
	e.block.Do(func() {
		close(e.enter)
		<-e.wait
	})
}

// TestResetTellsBeforeDelivering: after Reset forgot the sequences seen, no
// subscriber gets a frame before it was told it missed frames; otherwise
// it would go live past frames it never got and catch up after them.
func TestResetTellsBeforeDelivering(t *testing.T) {
	js := natstest.Start(t)
	nc := js.Conn()
	if _, err := stream.Ensure(context.Background(), js, stream.Config{Memory: true}); err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		m := frame.Meta{OutputID: "o", Format: frame.PNG, Width: 1, Height: 1, BatchSize: 1}
		msg := nats.NewMsg(m.Subject())
		m.Header(msg.Header)
		msg.Data = []byte("image")
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}

	h := New(nc, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), Stats{})
	t.Cleanup(h.Close)
	once, sent, enter, wait := &sync.Once{}, make(chan struct{}, 8), make(chan struct{}), make(chan struct{})
	subs := []*events{
		{got: make(chan struct{}, 8), block: once, sent: sent, enter: enter, wait: wait},
		{got: make(chan struct{}, 8), block: once, sent: sent, enter: enter, wait: wait},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range subs {
		if err := h.Join(ctx, s, []string{subject.Live("o", "")}); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	for _, s := range subs {
		<-s.got
		<-sent
	}

	go h.Reset()
	<-enter // one subscriber is being told; the other is not yet
	publish()
	// Give a wrongly ordered delivery the chance to happen; a correct hub
	// delivers nothing until the first Missed returns.
	select {
	case <-sent:
	case <-time.After(time.Second):
	}
	close(wait)
	for _, s := range subs {
		for {
			s.mu.Lock()
			n := len(s.log)
			s.mu.Unlock()
			if n >= 3 {
				break
			}
			<-s.got
		}
		s.mu.Lock()
		got := s.log[1]
		s.mu.Unlock()
		if got != "missed" {
			t.Errorf("after Reset: got %v; want missed before the next deliver", s.log)
		}
	}
}
