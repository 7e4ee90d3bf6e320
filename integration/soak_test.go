package integration_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/framecast/framecast/integration/ledger"
	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/services/gateway/client"
)

// EnvSoak names the environment variable holding the soak's duration
// (e.g. 10m); TestSoak is skipped without it.
const EnvSoak = "FRAMECAST_SOAK"

// sample is one measurement of a process.
type sample struct {
	at         time.Duration
	rss        int64
	threads    int
	goroutines float64 // -1 when the service does not export go_goroutines
}

// TestSoak runs 100 clients over two gateways at 50 frames/s for
// $FRAMECAST_SOAK and checks that each gateway's RSS (and goroutine count,
// when /metrics has go_goroutines) stays flat within 10% after warm-up,
// and that every acknowledged frame reached every client.
func TestSoak(t *testing.T) {
	v := os.Getenv(EnvSoak)
	if v == "" {
		t.Skipf("set %s=<duration> (e.g. 10m) to run the soak", EnvSoak)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 20*time.Second {
		t.Fatalf("%s=%q: want a duration of at least 20s", EnvSoak, v)
	}
	const (
		clients = 100
		rate    = 50
		side    = 32 // 32x32 RGB noise: about 3 KiB per frame
	)
	warmup := d / 5
	window := d / 5 // samples compared: the first window after warm-up and the last one

	s := newStack(t, stackOptions{gateways: 2})
	ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Minute)
	defer cancel()
	l := ledger.New(scenarioName(t))
	outs := outputs("soak", 10)
	wctx, wcancel := context.WithCancel(ctx)
	var ws []*watcher
	for i := range clients {
		cfg := client.Config{OutputID: outs[i%len(outs)], ClientID: fmt.Sprintf("c%d", i), Since: u64(0)}
		ws = append(ws, watch(t, wctx, l, fmt.Sprintf("client%d", i), s.gatewayURLs(i%2), cfg))
	}
	waitHello(t, ctx, ws)

	var targets [][2]string
	for i, o := range outs {
		targets = append(targets, [2]string{o, ""}, [2]string{o, fmt.Sprintf("c%d", i)})
	}
	pub := newPublisher(s.producer.URL, l)
	pub.width, pub.height = side, side
	pctx, pcancel := context.WithTimeout(ctx, d)
	defer pcancel()
	start := time.Now()
	samples := make([][]sample, len(s.gateways))
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		for pctx.Err() == nil {
			for i, gw := range s.gateways {
				samples[i] = append(samples[i], measure(pctx, gw, time.Since(start)))
			}
			select {
			case <-pctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	pub.steady(pctx, rate, true, targets)
	sampling.Wait()

	finish(t, ctx, l)
	stopWatchers(t, wcancel, ws)
	t.Logf("producer statuses: %v", pub.Statuses())
	for i, gw := range s.gateways {
		checkFlat(t, gw.Name, samples[i], warmup, window)
	}
}

func measure(ctx context.Context, gw *topo.Service, at time.Duration) sample {
	sm := sample{at: at, goroutines: -1}
	sm.rss, _ = gw.RSS()
	sm.threads = threads(gw.PID())
	if g, ok := metric(ctx, gw.URL, "go_goroutines"); ok {
		sm.goroutines = g
	}
	return sm
}

// threads is the Threads: count of /proc/<pid>/status, or -1.
func threads(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			var n int
			fmt.Sscan(rest, &n)
			return n
		}
	}
	return -1
}

// checkFlat compares each figure in the first window after warm-up with
// the last window: the end may exceed the start by at most 10% (RSS: or
// 4 MiB, whichever is larger, since a small heap moves in whole spans).
// RSS and threads compare peaks. Goroutines compare floors: a gateway
// starts a connection's writer goroutine only while it has frames to
// write, so the peak depends on what was in flight at the sampling
// instant, while a leak raises the floor.
func checkFlat(t *testing.T, name string, ss []sample, warmup, window time.Duration) {
	t.Helper()
	if len(ss) == 0 {
		t.Errorf("%s: no samples", name)
		return
	}
	end := ss[len(ss)-1].at
	first, last := sample{goroutines: -1}, sample{goroutines: -1}
	firstFloor, lastFloor := -1.0, -1.0
	floor := func(cur, g float64) float64 {
		if g < 0 || (cur >= 0 && cur <= g) {
			return cur
		}
		return g
	}
	for _, s := range ss {
		if s.at >= warmup && s.at < warmup+window {
			first.rss, first.threads, first.goroutines = max(first.rss, s.rss), max(first.threads, s.threads), max(first.goroutines, s.goroutines)
			firstFloor = floor(firstFloor, s.goroutines)
		}
		if s.at > end-window {
			last.rss, last.threads, last.goroutines = max(last.rss, s.rss), max(last.threads, s.threads), max(last.goroutines, s.goroutines)
			lastFloor = floor(lastFloor, s.goroutines)
		}
	}
	t.Logf("soak %s: RSS %.1f -> %.1f MiB, threads %d -> %d (peaks), goroutines floor %v -> %v, peak %v -> %v (first window after %v warm-up, last %v)",
		name, float64(first.rss)/(1<<20), float64(last.rss)/(1<<20), first.threads, last.threads, firstFloor, lastFloor, first.goroutines, last.goroutines, warmup, window)
	if limit := max(first.rss+first.rss/10, first.rss+4<<20); last.rss > limit {
		t.Errorf("%s RSS: got %d MiB at the end; want at most %d MiB (start %d MiB + 10%%)", name, last.rss>>20, limit>>20, first.rss>>20)
	}
	if firstFloor >= 0 && lastFloor > firstFloor*1.1 {
		t.Errorf("%s goroutines: floor %v at the end; want at most %v (start + 10%%)", name, lastFloor, firstFloor*1.1)
	}
}
