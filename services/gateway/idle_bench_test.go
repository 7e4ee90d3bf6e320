package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkIdleMemory holds 10,000 idle connections on one gateway and, in
// the same run, on a bare coder/websocket server that accepts each
// connection and holds it with a blocked reader and nothing else. The
// clients run in a child process. The gateway runs in this process, whose
// RSS delta also counts the embedded NATS server (which does nothing per
// websocket); the bare server runs in a fresh child process of its own.
// Both deltas are taken after a GC, and the gateway's once every
// connection has answered a ping (the clients read, as browsers do), so
// that it is the memory an idle connection keeps. Run it with -benchtime
// 1x: later iterations reuse memory the first one took from the system.
func BenchmarkIdleMemory(b *testing.B) {
	const conns = 10000
	raiseNoFile(b)
	ns := testNATS(b)
	srv, hs := testGateway(b, ns, func(c *Config) { c.PingInterval = 2 * time.Second })
	for range b.N {
		// The gateway, in this process.
		runtime.GC()
		m0 := heapStack()
		rss0 := vmRSS(b)
		clients := startIdleClients(b, hs.URL, conns)
		for srv.Connections() < conns {
			time.Sleep(10 * time.Millisecond)
		}
		// A connection's first ping comes within the interval.
		time.Sleep(3 * time.Second)
		if n := testutil.ToFloat64(srv.metrics.pings); n < conns {
			b.Fatalf("%v pings answered; want every connection's", n)
		}
		runtime.GC()
		m1 := heapStack()
		rss1 := vmRSS(b)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.StackInuse)/conns/1024, "gw-stack-KiB/conn")
		clients.stop()
		for srv.Connections() > 0 {
			time.Sleep(10 * time.Millisecond)
		}

		// The bare server, in a fresh process.
		bare := startBareIdleServer(b)
		s0 := bare.stat()
		clients = startIdleClients(b, bare.url, conns)
		s1 := bare.stat()
		for s1.conns < conns {
			time.Sleep(10 * time.Millisecond)
			s1 = bare.stat()
		}
		clients.stop()
		bare.stop()

		gw := float64(rss1-rss0) / conns / 1024
		bareKiB := float64(s1.rss-s0.rss) / conns / 1024
		b.ReportMetric(gw, "gw-rss-KiB/conn")
		b.ReportMetric(float64(m1-m0)/conns/1024, "gw-heap+stack-KiB/conn")
		b.ReportMetric(bareKiB, "bare-rss-KiB/conn")
		b.ReportMetric(float64(s1.heapStack-s0.heapStack)/conns/1024, "bare-heap+stack-KiB/conn")
		b.ReportMetric(gw/bareKiB, "rss-ratio")
	}
}

// heapStack is the heap and stack memory in use.
func heapStack() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// idleClients is a child process holding idle websocket connections.
type idleClients struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// TestMain runs this test binary as one of BenchmarkIdleMemory's child
// processes when the benchmark starts it as one (idleClientsMain,
// bareIdleServerMain), and as the package's tests otherwise.
func TestMain(m *testing.M) {
	child := map[string]func() error{envIdleURL: idleClientsMain, envBareIdle: bareIdleServerMain}
	for env, run := range child {
		if os.Getenv(env) == "" {
			continue
		}
		if err := run(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The environment that makes the test binary one of BenchmarkIdleMemory's
// child processes.
const (
	envIdleURL   = "FRAMECAST_IDLE_URL"   // the gateway idleClientsMain dials
	envIdleConns = "FRAMECAST_IDLE_CONNS" // how many connections it dials
	envBareIdle  = "FRAMECAST_BARE_IDLE"  // run bareIdleServerMain
)

// startIdleClients starts idleClientsMain in a child process and returns
// once it has dialed n connections to base.
func startIdleClients(b *testing.B, base string, n int) *idleClients {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envIdleURL+"="+base, envIdleConns+"="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "ready") {
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return &idleClients{cmd: cmd, stdin: stdin}
}

// stop closes the connections and waits for the child to exit.
func (c *idleClients) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

// idleClientsMain is BenchmarkIdleMemory's client process. It dials
// $FRAMECAST_IDLE_CONNS connections, prints "ready", and holds them until
// its standard input closes, reading (which answers pings) meanwhile.
func idleClientsMain() error {
	url := os.Getenv(envIdleURL)
	n, err := strconv.Atoi(os.Getenv(envIdleConns))
	if err != nil {
		return fmt.Errorf("%s: %w", envIdleConns, err)
	}
	if err := raiseNoFileLimit(); err != nil {
		return err
	}
	cs := make([]*websocket.Conn, 0, n)
	for range n {
		c, _, err := websocket.Dial(context.Background(), wsURL(url, "/v1/ws?output_id=idle"), nil)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		cs = append(cs, c)
		go func() { // reads, which answers the gateway's pings
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range cs {
		_ = c.CloseNow()
	}
	return nil
}

// bareIdleServer is a child process running bareIdleServerMain.
type bareIdleServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	url   string
}

// bareStat is what the bare server reports about itself.
type bareStat struct {
	conns     int
	rss       int64
	heapStack int64
}

func startBareIdleServer(b *testing.B) *bareIdleServer {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envBareIdle+"=1")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &bareIdleServer{cmd: cmd, stdin: stdin, out: bufio.NewScanner(out)}
	for s.out.Scan() {
		if u, ok := strings.CutPrefix(s.out.Text(), "listen "); ok {
			s.url = u
			return s
		}
	}
	b.Fatalf("bare server: no listen line: %v", s.out.Err())
	return nil
}

// stat asks the server for its connection count and memory after a GC.
func (s *bareIdleServer) stat() bareStat {
	if _, err := io.WriteString(s.stdin, "stat\n"); err != nil {
		panic(fmt.Sprintf("bare server: %v", err))
	}
	for s.out.Scan() {
		var st bareStat
		if _, err := fmt.Sscanf(s.out.Text(), "stat %d %d %d", &st.conns, &st.rss, &st.heapStack); err == nil {
			return st
		}
	}
	panic(fmt.Sprintf("bare server: no stat line: %v", s.out.Err()))
}

func (s *bareIdleServer) stop() {
	_ = s.stdin.Close()
	_ = s.cmd.Wait()
}

// bareIdleServerMain is BenchmarkIdleMemory's baseline server process. It
// serves websockets on a loopback port it prints
// as "listen URL", accepting every connection and holding it with a
// blocked reader. For each "stat" line on its standard input it prints
// "stat CONNS RSS HEAP+STACK" (bytes, after a GC); it exits when its
// standard input closes.
func bareIdleServerMain() error {
	if err := raiseNoFileLimit(); err != nil {
		return err
	}
	var conns atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					_ = c.CloseNow()
					return
				}
			}
		}()
	})}
	go func() { _ = hs.Serve(l) }()
	defer hs.Close()
	fmt.Println("listen http://" + l.Addr().String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "stat" {
			runtime.GC()
			rss, err := readRSS()
			if err != nil {
				return err
			}
			fmt.Printf("stat %d %d %d\n", conns.Load(), rss, heapStack())
		}
	}
	return sc.Err()
}

// vmRSS is this process's resident set size in bytes.
func vmRSS(tb testing.TB) int64 {
	rss, err := readRSS()
	if err != nil {
		tb.Fatal(err)
	}
	return rss
}

// readRSS reads VmRSS from /proc/self/status, in bytes.
func readRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS line in /proc/self/status")
}
