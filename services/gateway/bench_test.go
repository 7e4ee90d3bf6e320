package gateway

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/subject"
	"github.com/framecast/framecast/shared/wire"
)

// BenchmarkLatency measures publish-to-receive latency through the gateway
// and, in the same run, to a plain NATS subscriber of the same live
// subject. One frame is in flight at a time.
func BenchmarkLatency(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			ns := testNATS(b)
			_, hs := testGateway(b, ns, nil)
			p := newPublisher(b, ns)
			sub, err := p.nc.SubscribeSync(subject.Live("bench", ""))
			if err != nil {
				b.Fatal(err)
			}
			c := dial(b, hs.URL, "/v1/ws?output_id=bench", nil)
			readControl(b, c, wire.TypeHello)
			data := make([]byte, size)
			var viaGW, viaNATS []time.Duration
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := p.tryPublish("bench", "", data); err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := sub.NextMsg(10 * time.Second); err != nil {
						b.Error(err)
					}
					viaNATS = append(viaNATS, time.Since(start))
				}()
				if _, err := tryRead(c); err != nil {
					b.Fatal(err)
				}
				viaGW = append(viaGW, time.Since(start))
				wg.Wait()
			}
			b.StopTimer()
			gw50, gw99 := percentiles(viaGW)
			n50, n99 := percentiles(viaNATS)
			b.ReportMetric(float64(gw50.Microseconds()), "gw-p50-µs")
			b.ReportMetric(float64(gw99.Microseconds()), "gw-p99-µs")
			b.ReportMetric(float64(n50.Microseconds()), "nats-p50-µs")
			b.ReportMetric(float64(n99.Microseconds()), "nats-p99-µs")
			b.ReportMetric(float64(gw50)/float64(max(n50, 1)), "p50-ratio")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
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

// BenchmarkFanout delivers each frame of one output to 1000 websocket
// connections of one gateway. The clients run in this process, so the CPU
// figure includes their reading.
func BenchmarkFanout(b *testing.B) {
	const conns = 1000
	const size = 64 << 10
	raiseNoFile(b)
	ns := testNATS(b)
	_, hs := testGateway(b, ns, nil)
	p := newPublisher(b, ns)
	cs := make([]*websocket.Conn, conns)
	for i := range cs {
		cs[i] = dial(b, hs.URL, "/v1/ws?output_id=fan", nil)
		readControl(b, cs[i], wire.TypeHello)
	}
	data := make([]byte, size)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range b.N {
				if _, _, err := c.Read(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for range b.N {
		if _, err := p.tryPublish("fan", "", data); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N*conns)/wall.Seconds(), "frames/s")
	b.ReportMetric(float64(b.N*conns*size)/wall.Seconds()/(1<<20), "MiB/s")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-cores")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func raiseNoFile(tb testing.TB) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkIdleMemory holds 10,000 idle connections on one gateway; the
// clients run in a child process, so the RSS delta is the gateway's (and
// the embedded NATS server's, which does nothing per websocket).
func BenchmarkIdleMemory(b *testing.B) {
	const conns = 10000
	raiseNoFile(b)
	ns := testNATS(b)
	srv, hs := testGateway(b, ns, nil)
	for range b.N {
		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		rss0 := vmRSS(b)
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$")
		cmd.Env = append(os.Environ(), "FRAMECAST_IDLE_URL="+hs.URL, "FRAMECAST_IDLE_CONNS="+strconv.Itoa(conns))
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && !strings.Contains(sc.Text(), "ready") {
		}
		for srv.Connections() < conns {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		rss1 := vmRSS(b)
		_ = stdin.Close()
		_ = cmd.Wait()
		b.ReportMetric(float64(rss1-rss0)/conns/1024, "rss-KiB/conn")
		b.ReportMetric(float64(int64(m1.HeapInuse+m1.StackInuse)-int64(m0.HeapInuse+m0.StackInuse))/conns/1024, "heap+stack-KiB/conn")
		for srv.Connections() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestIdleClients is BenchmarkIdleMemory's client process; it is skipped
// otherwise.
func TestIdleClients(t *testing.T) {
	url := os.Getenv("FRAMECAST_IDLE_URL")
	if url == "" {
		t.Skip("client process of BenchmarkIdleMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("FRAMECAST_IDLE_CONNS"))
	raiseNoFile(t)
	cs := make([]*websocket.Conn, 0, n)
	for range n {
		c, _, err := websocket.Dial(context.Background(), wsURL(url, "/v1/ws?output_id=idle"), nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		cs = append(cs, c)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range cs {
		_ = c.CloseNow()
	}
}

func vmRSS(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
