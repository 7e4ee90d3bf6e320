package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
	"github.com/framecast/framecast/shared/wire"
)

// Every benchmark here measures the gateway and a baseline in the same run
// on the same machine, and reports their ratio: the machine may be shared,
// so absolute figures move between runs while the ratios hold better.
// BENCHMARKS.md at the repository root records the figures and commands.

// arrival is one frame received by a benchmark reader.
type arrival struct {
	seq uint64
	at  time.Time
	err error
}

// readGateway reads native frames from c until ctx ends, sending each
// arrival on out.
func readGateway(ctx context.Context, c *websocket.Conn, out chan<- arrival) {
	for {
		_, b, err := c.Read(ctx)
		a := arrival{at: time.Now(), err: err}
		if err == nil {
			var h wire.Header
			h, _, a.err = wire.DecodeNative(b)
			a.seq = h.Seq
		}
		select {
		case out <- a:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// subscribePlain subscribes a connection of its own, as a plain NATS
// client would, to subj and sends each arrival on out.
func subscribePlain(b *testing.B, ns *server.Server, subj string, out chan<- arrival) {
	b.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	b.Cleanup(nc.Close)
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		a := arrival{at: time.Now()}
		a.seq, a.err = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		out <- a
	})
	if err != nil {
		b.Fatalf("subscribe: %v", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		b.Fatalf("flush: %v", err)
	}
}

// BenchmarkLatency measures publish-to-receive latency of one frame at a
// time: from the start of the producer's JetStream publish to the frame's
// arrival at a websocket client of the gateway and, for the same frame, at
// a plain NATS subscriber of the same live subject (its own connection).
// Both readers wait before the publish starts and stamp the arrival as
// soon as the whole message is read, so every sample of the two is taken
// under the same load; the two readers share the machine's cores.
func BenchmarkLatency(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			ns := testNATS(b)
			_, hs := testGateway(b, ns, nil)
			p := newPublisher(b, ns)
			ctx, cancel := context.WithCancel(context.Background())
			b.Cleanup(cancel)
			gw, plain := make(chan arrival, 1), make(chan arrival, 1)
			subscribePlain(b, ns, subject.Live("bench", ""), plain)
			c := dial(b, hs.URL, "/v1/ws?output_id=bench", nil)
			readControl(b, c, wire.TypeHello)
			go readGateway(ctx, c, gw)

			data := make([]byte, size)
			var viaGW, viaNATS []time.Duration
			one := func(record bool) {
				start := time.Now()
				seq, err := p.tryPublish("bench", "", data)
				if err != nil {
					b.Fatalf("publish: %v", err)
				}
				for _, r := range []struct {
					name string
					ch   chan arrival
					d    *[]time.Duration
				}{{"gateway", gw, &viaGW}, {"nats", plain, &viaNATS}} {
					a := <-r.ch
					if a.err != nil || a.seq != seq {
						b.Fatalf("%s: got seq %d, err %v; want seq %d", r.name, a.seq, a.err, seq)
					}
					if record {
						*r.d = append(*r.d, a.at.Sub(start))
					}
				}
			}
			for range 20 {
				one(false) // warm up connections and buffers
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				one(true)
			}
			b.StopTimer()
			gw50, gw99 := percentiles(viaGW)
			n50, n99 := percentiles(viaNATS)
			b.ReportMetric(float64(gw50.Microseconds()), "gw-p50-µs")
			b.ReportMetric(float64(gw99.Microseconds()), "gw-p99-µs")
			b.ReportMetric(float64(n50.Microseconds()), "nats-p50-µs")
			b.ReportMetric(float64(n99.Microseconds()), "nats-p99-µs")
			b.ReportMetric(float64(gw50)/float64(max(n50, 1)), "p50-ratio")
			b.ReportMetric(float64(gw99)/float64(max(n99, 1)), "p99-ratio")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "serial-frames/s")
		})
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// BenchmarkThroughput publishes b.N frames back to back (up to 16
// publishes awaiting their ack) and measures the rate at which one
// websocket client of the gateway and, for the same frames, one plain
// NATS subscriber of the same live subject receive them: frames over the
// time from the first publish to the last arrival.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			ns := testNATS(b)
			_, hs := testGateway(b, ns, nil)
			p := newPublisher(b, ns)
			js, err := jetstream.New(p.nc, jetstream.WithPublishAsyncMaxPending(16))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			b.Cleanup(cancel)
			gw, plain := make(chan arrival, 64), make(chan arrival, 64)
			subscribePlain(b, ns, subject.Live("tput", ""), plain)
			c := dial(b, hs.URL, "/v1/ws?output_id=tput", nil)
			readControl(b, c, wire.TypeHello)
			go readGateway(ctx, c, gw)

			// Each reader counts arrivals up to the n-th frame and reports
			// when that came.
			last := func(ch chan arrival, n int, done chan<- time.Time) {
				var at time.Time
				for i := 0; i < n; i++ {
					a := <-ch
					if a.err != nil {
						b.Errorf("frame %d: %v", i, a.err)
						break
					}
					at = a.at
				}
				done <- at
			}
			data := make([]byte, size)
			publish := func(n int) (start time.Time, gwDone, natsDone time.Time) {
				gd, nd := make(chan time.Time, 1), make(chan time.Time, 1)
				go last(gw, n, gd)
				go last(plain, n, nd)
				start = time.Now()
				for range n {
					m := frame.Meta{OutputID: "tput", Format: frame.WEBP, Width: 4, Height: 3,
						BatchSize: 1, Timestamp: time.Now().UnixMilli()}
					msg := nats.NewMsg(m.Subject())
					m.Header(msg.Header)
					msg.Data = data
					if _, err := js.PublishMsgAsync(msg); err != nil {
						b.Fatalf("publish: %v", err)
					}
				}
				<-js.PublishAsyncComplete()
				return start, <-gd, <-nd
			}
			publish(20) // warm up
			b.SetBytes(int64(size))
			b.ResetTimer()
			start, gwDone, natsDone := publish(b.N)
			b.StopTimer()
			gwRate := float64(b.N) / gwDone.Sub(start).Seconds()
			natsRate := float64(b.N) / natsDone.Sub(start).Seconds()
			b.ReportMetric(gwRate, "gw-frames/s")
			b.ReportMetric(natsRate, "nats-frames/s")
			b.ReportMetric(gwRate/natsRate, "rate-ratio")
		})
	}
}

// fanoutPath is one way of delivering a frame to many sockets: the
// gateway, or a baseline.
type fanoutPath struct {
	name  string
	conns int
	send  func() error      // deliver one frame to every connection
	recv  func(i int) error // read one frame on connection i
	size  int               // bytes a connection receives per frame
	wall  time.Duration
	cpu   time.Duration
	count int // frames received, over all connections
}

// round sends n frames and waits until every connection read them.
func (fp *fanoutPath) round(b *testing.B, n int) {
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for i := range fp.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := fp.recv(i); err != nil {
					b.Errorf("%s: connection %d: %v", fp.name, i, err)
					return
				}
			}
		}()
	}
	for range n {
		if err := fp.send(); err != nil {
			b.Fatalf("%s: send: %v", fp.name, err)
		}
	}
	wg.Wait()
	fp.wall += time.Since(start)
	fp.cpu += cpuTime() - cpu0
	fp.count += n * fp.conns
}

func (fp *fanoutPath) framesPerSec() float64 { return float64(fp.count) / fp.wall.Seconds() }

func (fp *fanoutPath) report(b *testing.B) {
	b.ReportMetric(fp.framesPerSec(), fp.name+"-frames/s")
	b.ReportMetric(fp.framesPerSec()*float64(fp.size)/(1<<20), fp.name+"-MiB/s")
	b.ReportMetric(fp.cpu.Seconds()/fp.wall.Seconds(), fp.name+"-cpu-cores")
	b.ReportMetric(float64(fp.cpu.Microseconds())/float64(fp.count), fp.name+"-cpu-µs/frame")
}

// BenchmarkFanout delivers each of b.N frames of 64 KiB to 1000 sockets
// along three paths, all held open together and run in alternating rounds
// of 10 frames so that noise hits each alike:
//
//   - gw: one output through one gateway to 1000 websocket clients;
//   - nats: the same frames of another output, published the same way, to
//     1000 plain NATS connections subscribed to its live subject (NATS's
//     own fan-out);
//   - ws: a bare coder/websocket server writing the gateway's wire bytes
//     to 1000 sockets from a bounded queue per socket, without NATS (the
//     socket-write ceiling).
//
// Clients, servers and NATS run in this process, so cpu-cores counts all
// of them, and cpu-µs/frame is that CPU time per frame delivered to one
// socket. The ratios are the gateway's frames/s over each baseline's.
func BenchmarkFanout(b *testing.B) {
	const (
		conns = 1000
		size  = 64 << 10
		round = 10
	)
	raiseNoFile(b)
	ns := testNATS(b)
	_, hs := testGateway(b, ns, nil)
	p := newPublisher(b, ns)
	data := make([]byte, size)
	ctx := context.Background()

	gwConns := make([]*websocket.Conn, conns)
	for i := range gwConns {
		gwConns[i] = dial(b, hs.URL, "/v1/ws?output_id=fan", nil)
		readControl(b, gwConns[i], wire.TypeHello)
	}
	native := wire.EncodeNative(wire.HeaderOf(1, frame.Meta{OutputID: "fan", Format: frame.WEBP,
		Width: 4, Height: 3, BatchSize: 1, Timestamp: time.Now().UnixMilli()}), data)
	gwPath := &fanoutPath{name: "gw", conns: conns, size: len(native),
		send: func() error { _, err := p.tryPublish("fan", "", data); return err },
		recv: func(i int) error { _, _, err := gwConns[i].Read(ctx); return err },
	}

	subs := make([]*nats.Subscription, conns)
	for i := range subs {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			b.Fatalf("connect: %v", err)
		}
		b.Cleanup(nc.Close)
		if subs[i], err = nc.SubscribeSync(subject.Live("fan-nats", "")); err != nil {
			b.Fatalf("subscribe: %v", err)
		}
		_ = subs[i].SetPendingLimits(-1, -1)
		if err := nc.Flush(); err != nil {
			b.Fatalf("flush: %v", err)
		}
	}
	natsPath := &fanoutPath{name: "nats", conns: conns, size: size,
		send: func() error { _, err := p.tryPublish("fan-nats", "", data); return err },
		recv: func(i int) error { _, err := subs[i].NextMsg(30 * time.Second); return err },
	}

	bare := newBareFanout(b)
	wsConns := make([]*websocket.Conn, conns)
	for i := range wsConns {
		wsConns[i] = dial(b, bare.hs.URL, "/", nil)
	}
	for bare.conns() < conns {
		time.Sleep(10 * time.Millisecond)
	}
	wsPath := &fanoutPath{name: "ws", conns: conns, size: len(native),
		send: func() error { bare.send(native); return nil },
		recv: func(i int) error { _, _, err := wsConns[i].Read(ctx); return err },
	}

	paths := []*fanoutPath{gwPath, natsPath, wsPath}
	for _, fp := range paths {
		fp.round(b, 2) // warm up
		fp.wall, fp.cpu, fp.count = 0, 0, 0
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += round {
		for _, fp := range paths {
			fp.round(b, min(round, b.N-done))
		}
	}
	b.StopTimer()
	for _, fp := range paths {
		fp.report(b)
	}
	b.ReportMetric(gwPath.framesPerSec()/natsPath.framesPerSec(), "gw/nats")
	b.ReportMetric(gwPath.framesPerSec()/wsPath.framesPerSec(), "gw/ws")
}

// bareFanout is a coder/websocket server with no NATS: each accepted
// socket gets a queue of 128 messages (the gateway's default 8 MiB of
// 64 KiB frames) drained by a writer goroutine, and send puts one message
// on every queue.
type bareFanout struct {
	hs   *httptest.Server
	mu   sync.Mutex
	outs []chan []byte
}

func newBareFanout(b *testing.B) *bareFanout {
	bf := &bareFanout{}
	bf.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		ctx := c.CloseRead(context.Background())
		out := make(chan []byte, 128)
		bf.mu.Lock()
		bf.outs = append(bf.outs, out)
		bf.mu.Unlock()
		go func() {
			defer c.CloseNow()
			for {
				select {
				case m, ok := <-out:
					if !ok {
						return
					}
					if err := c.Write(ctx, websocket.MessageBinary, m); err != nil {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}))
	b.Cleanup(func() {
		bf.mu.Lock()
		for _, out := range bf.outs {
			close(out)
		}
		bf.outs = nil
		bf.mu.Unlock()
		bf.hs.Close()
	})
	return bf
}

func (bf *bareFanout) conns() int {
	bf.mu.Lock()
	defer bf.mu.Unlock()
	return len(bf.outs)
}

func (bf *bareFanout) send(m []byte) {
	bf.mu.Lock()
	defer bf.mu.Unlock()
	for _, out := range bf.outs {
		out <- m
	}
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func raiseNoFile(tb testing.TB) {
	if err := raiseNoFileLimit(); err != nil {
		tb.Fatal(err)
	}
}

// raiseNoFileLimit raises this process's open-file limit to its hard limit.
func raiseNoFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// BenchmarkOthersEvents: the CPU a ComfyUI event for a client with no
// connection costs while 1000 native connections of other clients are
// idle on the gateway, beside the same events with one such connection.
// The events ring is followed by every native connection, so an event
// must not cost the gateway a wake per connection.
//
// Clients, gateway and NATS run in this process: cpu-µs/event counts all
// of them; the ratio is the 1000-connection figure over the baseline.
func BenchmarkOthersEvents(b *testing.B) {
	const conns = 1000
	raiseNoFile(b)
	ns := testNATS(b)
	_, hs := testGateway(b, ns, nil)
	p := newPublisher(b, ns)
	ctx := context.Background()
	other := `{"event":"progress","data":{"value":1,"max":20}}`
	last := `{"event":"status","data":{"status":{"exec_info":{"queue_remaining":0}}}}`

	// run publishes n events for a client no connection has, then one for
	// every client, and returns the CPU per event once each of cs has
	// that last one.
	run := func(cs []*websocket.Conn, n int) float64 {
		start := cpuTime()
		for range n {
			p.publishEvent("nobody", other)
		}
		seq := p.publishEvent("", last)
		for _, c := range cs {
			for {
				e := readControl(b, c, wire.TypeEvent)
				if *e.Seq == seq {
					break
				}
			}
		}
		_ = ctx
		return float64((cpuTime() - start).Microseconds()) / float64(n+1)
	}
	cs := make([]*websocket.Conn, conns)
	for i := range cs {
		cs[i] = dial(b, hs.URL, fmt.Sprintf("/v1/ws?output_id=o&client_id=c%d", i), nil)
		readControl(b, cs[i], wire.TypeHello)
	}
	run(cs, 10) // warm up
	b.ResetTimer()
	idle := run(cs, b.N)
	b.StopTimer()
	for _, c := range cs[1:] {
		_ = c.CloseNow()
	}
	run(cs[:1], 10)
	one := run(cs[:1], b.N)
	b.ReportMetric(idle, "cpu-µs/event")
	b.ReportMetric(one, "base-cpu-µs/event")
	b.ReportMetric(idle/one, "1000/1")
}
