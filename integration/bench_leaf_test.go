package integration_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/services/gateway/client"
	"github.com/framecast/framecast/shared/wire"
)

// BenchmarkLeafHop measures what a GPU host's leaf node adds to a frame's
// way: the time from a producer's POST to the frame's arrival at a
// websocket client of a hub gateway, for a producer on a leaf node
// (shipped leaf.conf, linked to the hub without a proxy) against one
// connected to the hub directly, in the same run. Each iteration
// publishes one small frame through each, one after the other, so both
// paths share the machine's noise. It reports the p50 and p99 of each
// path in milliseconds, and the difference of the medians.
//
//	go test -run '^$' -bench LeafHop -benchtime 500x ./integration/
func BenchmarkLeafHop(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lt := newLeafTopology(b, leafOptions{hosts: []string{"gpu"}, gateways: 1, direct: true})
	hub := lt.env.StartProducer("producer-hub", lt.hub.URLWithUser("producer", natsPasswords["producer"]),
		fmt.Sprintf("--stream-replicas=%d", len(lt.hub.Nodes)))
	c := dial(b, ctx, client.Config{URL: lt.gateways[0].URL, OutputID: "latency"})
	defer c.Close()
	expectControl(b, ctx, c, wire.TypeHello)

	arrived := newArrivals()
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go arrived.read(rctx, c)

	l := ledger.New("LeafHop")
	paths := []struct {
		name string
		pub  *publisher
		lat  []time.Duration
	}{
		{name: "direct", pub: newPublisher(hub.URL, l)},
		{name: "leaf", pub: newPublisher(lt.hosts[0].producer.URL, l)},
	}
	paths[1].pub.next.Store(1 << 40)
	b.ResetTimer()
	for range b.N {
		for i := range paths {
			p := &paths[i]
			start := time.Now()
			f, err := p.pub.publish(ctx, "latency", "", false)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			at, err := arrived.wait(ctx, f.ID)
			if err != nil {
				b.Fatalf("%s: frame %d (seq %d): %v", p.name, f.ID, f.Seq, err)
			}
			p.lat = append(p.lat, at.Sub(start))
		}
	}
	b.StopTimer()
	var p50 [2]float64
	for i, p := range paths {
		slices.Sort(p.lat)
		p50[i] = ms(p.lat[len(p.lat)/2])
		b.ReportMetric(p50[i], "p50-"+p.name+"-ms")
		b.ReportMetric(ms(p.lat[(len(p.lat)*99)/100]), "p99-"+p.name+"-ms")
	}
	b.ReportMetric(p50[1]-p50[0], "p50-hop-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// arrivals records when each frame id reached the client.
type arrivals struct {
	mu   sync.Mutex
	at   map[uint64]time.Time
	err  error
	wake chan struct{} // closed and replaced at each arrival
}

func newArrivals() *arrivals {
	return &arrivals{at: map[uint64]time.Time{}, wake: make(chan struct{})}
}

// read records every frame c receives until ctx ends or c fails.
func (a *arrivals) read(ctx context.Context, c *client.Conn) {
	for {
		m, err := c.Next(ctx)
		now := time.Now()
		var id uint64
		if err == nil {
			f, ok := m.(*client.Frame)
			if !ok {
				continue
			}
			id, err = ledger.ID(f.Image)
		}
		a.mu.Lock()
		if err != nil {
			a.err = err
		} else {
			a.at[id] = now
		}
		close(a.wake)
		a.wake = make(chan struct{})
		a.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// wait returns when frame id arrived.
func (a *arrivals) wait(ctx context.Context, id uint64) (time.Time, error) {
	for {
		a.mu.Lock()
		at, ok := a.at[id]
		err, wake := a.err, a.wake
		a.mu.Unlock()
		switch {
		case ok:
			return at, nil
		case err != nil:
			return time.Time{}, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}
