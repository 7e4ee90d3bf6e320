package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// column is one measured figure of a table.
type column struct {
	name string
	prec int // decimals
}

// table is one printed table: a row per gateway, then HEAD/BASE.
type table struct {
	title string
	cols  []column
}

// scenario runs against one gateway and returns one row per table.
type scenario struct {
	name   string
	tables []table
	run    func(r *runner, ctx context.Context, gw gatewayBin, dir string) ([][]float64, error)
}

// runner holds what every scenario run needs.
type runner struct {
	cfg  Config
	bins binaries
	log  io.Writer // progress lines
}

func scenarios() []scenario {
	return []scenario{
		{
			name: "storm",
			tables: []table{{
				title: "Reconnect storm: stored frames, then every client connects at once with since=0",
				cols: []column{{"clients connected", 0}, {"clients complete", 0}, {"p50 s", 2}, {"max s", 2},
					{"JS API requests", 0}, {"gateway CPU s", 2}},
			}},
			run: (*runner).storm,
		},
		{
			name: "connects",
			tables: []table{
				{
					title: "Live-only connects",
					cols: []column{{"connected", 0}, {"failed", 0}, {"time to connect all s", 2},
						{"connects/s", 0}, {"JS API requests", 0}},
				},
				{
					title: "Idle: gateway RSS per held connection",
					cols:  []column{{"connections", 0}, {"RSS delta MiB", 1}, {"KiB/conn", 2}},
				},
			},
			run: (*runner).connects,
		},
		{
			name: "saturation",
			tables: []table{{
				title: "Past saturation: live clients, large frames at a fixed rate",
				cols: []column{{"frames published", 0}, {"clients closed", 0}, {"closes 4008", 0}, {"clients with loss", 0},
					{"frames lost", 0}, {"duplicates", 0}, {"gap frames", 0}, {"behind at end", 0},
					{"nats CPU s", 2}, {"gateway CPU s", 2}, {"JS API requests", 0}},
			}},
			run: (*runner).saturation,
		},
		{
			name: "fanout",
			tables: []table{{
				title: "Fan-out: live clients of one output",
				cols: []column{{"frames published", 0}, {"clients complete", 0}, {"delivered GB", 2}, {"MiB/s", 0},
					{"gateway CPU s", 2}, {"gateway CPU s/GB", 3}, {"nats CPU s", 2}},
			}},
			run: (*runner).fanout,
		},
	}
}

// run builds the binaries and runs every chosen scenario against BASE,
// then HEAD, printing each scenario's tables to out as it ends.
func run(ctx context.Context, cfg Config, out io.Writer) error {
	if err := raiseNoFile(cfg.Connects); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gwbench-*")
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		if cfg.Keep || failed {
			fmt.Fprintf(os.Stderr, "logs and stores kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	r := &runner{cfg: cfg, log: os.Stderr}
	start := time.Now()
	if r.bins, err = build(ctx, cfg, dir, r.log); err != nil {
		return err
	}
	fmt.Fprintf(out, "gwbench %s\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(out, "%s, %d CPUs, load average before: %s\n", time.Now().UTC().Format("2006-01-02 15:04:05 UTC"), runtime.NumCPU(), loadAvg())
	for _, g := range r.bins.Gateways {
		fmt.Fprintf(out, "%s: %s\n", g.Label, g.Path)
	}
	for _, sc := range scenarios() {
		if !slices.Contains(cfg.Scenarios, sc.name) {
			continue
		}
		var rows [2][][]float64
		for i, gw := range r.bins.Gateways {
			fmt.Fprintf(r.log, "== %s, %s (at %s)\n", sc.name, gw.Label, time.Since(start).Round(time.Second))
			d := filepath.Join(dir, fmt.Sprintf("%s-%d", sc.name, i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if rows[i], err = sc.run(r, ctx, gw, d); err != nil {
				return fmt.Errorf("%s, %s: %w (logs in %s)", sc.name, gw.Label, err, d)
			}
		}
		for t, tb := range sc.tables {
			printTable(out, tb, r.bins.Gateways, rows[0][t], rows[1][t])
		}
	}
	fmt.Fprintf(out, "\nran in %s; load average after: %s\n", time.Since(start).Round(time.Second), loadAvg())
	failed = false
	return nil
}

func (r *runner) storm(ctx context.Context, gw gatewayBin, dir string) ([][]float64, error) {
	st, err := startStack(ctx, r.bins, gw, dir)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	pub, err := newPublisher(st.producerURL, "storm", r.cfg.StoredSize)
	if err != nil {
		return nil, err
	}
	var last uint64
	for range r.cfg.StoredFrames {
		if last, err = pub.one(ctx); err != nil {
			return nil, err
		}
	}
	lp, err := startLoad(dir)
	if err != nil {
		return nil, err
	}
	defer lp.stop()
	a0, err := st.api(ctx)
	if err != nil {
		return nil, err
	}
	cpu0, err := st.gw.cpu()
	if err != nil {
		return nil, err
	}
	since := uint64(0)
	rc, err := lp.do(request{Op: "connect", URL: st.gwURL, Output: "storm", N: r.cfg.Clients, Since: &since,
		Target: last, Expect: r.cfg.StoredFrames, SourceIPs: r.cfg.SourceIPs})
	if err != nil {
		return nil, err
	}
	ra, err := lp.do(request{Op: "await", Timeout: r.cfg.Drain})
	if err != nil {
		return nil, err
	}
	a1, err := st.api(ctx)
	if err != nil {
		return nil, err
	}
	cpu1, err := st.gw.cpu()
	if err != nil {
		return nil, err
	}
	r.note(rc, ra)
	return [][]float64{{float64(rc.Connected), float64(ra.Complete), ra.DoneP50.Seconds(), ra.DoneMax.Seconds(),
		float64(a1.Total - a0.Total), (cpu1 - cpu0).Seconds()}}, nil
}

func (r *runner) connects(ctx context.Context, gw gatewayBin, dir string) ([][]float64, error) {
	st, err := startStack(ctx, r.bins, gw, dir)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	lp, err := startLoad(dir)
	if err != nil {
		return nil, err
	}
	defer lp.stop()
	time.Sleep(time.Second)
	rss0, err := st.gw.rss()
	if err != nil {
		return nil, err
	}
	a0, err := st.api(ctx)
	if err != nil {
		return nil, err
	}
	rc, err := lp.do(request{Op: "connect", URL: st.gwURL, Output: "idle", N: r.cfg.Connects,
		Parallel: r.cfg.ConnectParallel, SourceIPs: r.cfg.SourceIPs})
	if err != nil {
		return nil, err
	}
	a1, err := st.api(ctx)
	if err != nil {
		return nil, err
	}
	time.Sleep(r.cfg.Settle)
	rss1, err := st.gw.rss()
	if err != nil {
		return nil, err
	}
	r.note(rc, reply{})
	n := float64(rc.Connected)
	return [][]float64{
		{n, float64(rc.Failed), rc.Elapsed.Seconds(), n / rc.Elapsed.Seconds(), float64(a1.Total - a0.Total)},
		{n, float64(rss1-rss0) / (1 << 20), float64(rss1-rss0) / 1024 / max(n, 1)},
	}, nil
}

// live is a run of live-only clients while frames of size are published
// at rate for d.
type live struct {
	clients, size int
	rate          float64
	duration      time.Duration
	output        string

	published      published
	connect, await reply
	natsCPU, gwCPU time.Duration
	api            uint64
	wall           time.Duration // from the first publish to the end of the await
}

func (r *runner) live(ctx context.Context, gw gatewayBin, dir string, lv *live) error {
	st, err := startStack(ctx, r.bins, gw, dir)
	if err != nil {
		return err
	}
	defer st.stop()
	pub, err := newPublisher(st.producerURL, lv.output, lv.size)
	if err != nil {
		return err
	}
	lp, err := startLoad(dir)
	if err != nil {
		return err
	}
	defer lp.stop()
	expect := int(lv.rate*lv.duration.Seconds()) + 1
	if lv.connect, err = lp.do(request{Op: "connect", URL: st.gwURL, Output: lv.output, N: lv.clients,
		Expect: expect, Reconnect: r.cfg.Reconnect, SourceIPs: r.cfg.SourceIPs}); err != nil {
		return err
	}
	a0, err := st.api(ctx)
	if err != nil {
		return err
	}
	n0, err := st.nats.cpu()
	if err != nil {
		return err
	}
	g0, err := st.gw.cpu()
	if err != nil {
		return err
	}
	t0 := time.Now()
	lv.published = pub.paced(ctx, lv.rate, lv.duration)
	if lv.published.Frames == 0 {
		return fmt.Errorf("no frame published: %v", lv.published.FirstErr)
	}
	if lv.await, err = lp.do(request{Op: "await", Target: lv.published.LastSeq, Timeout: r.cfg.Drain}); err != nil {
		return err
	}
	lv.wall = time.Since(t0)
	n1, err := st.nats.cpu()
	if err != nil {
		return err
	}
	g1, err := st.gw.cpu()
	if err != nil {
		return err
	}
	a1, err := st.api(ctx)
	if err != nil {
		return err
	}
	lv.natsCPU, lv.gwCPU, lv.api = n1-n0, g1-g0, a1.Total-a0.Total
	if lv.published.Errors > 0 {
		fmt.Fprintf(r.log, "   %d publishes failed, first: %v\n", lv.published.Errors, lv.published.FirstErr)
	}
	r.note(lv.connect, lv.await)
	return nil
}

func (r *runner) saturation(ctx context.Context, gw gatewayBin, dir string) ([][]float64, error) {
	lv := &live{clients: r.cfg.Clients, size: r.cfg.SatSize, rate: r.cfg.SatRate, duration: r.cfg.SatDuration, output: "sat"}
	if err := r.live(ctx, gw, dir, lv); err != nil {
		return nil, err
	}
	a := lv.await
	return [][]float64{{float64(lv.published.Frames), float64(a.ClientsClosed), float64(a.Closes["4008"]), float64(a.ClientsLost),
		float64(a.Lost), float64(a.Dups), float64(a.GapFrames), float64(a.Behind),
		lv.natsCPU.Seconds(), lv.gwCPU.Seconds(), float64(lv.api)}}, nil
}

func (r *runner) fanout(ctx context.Context, gw gatewayBin, dir string) ([][]float64, error) {
	lv := &live{clients: r.cfg.Clients, size: r.cfg.FanoutSize, rate: r.cfg.FanoutRate, duration: r.cfg.FanoutDuration, output: "fanout"}
	if err := r.live(ctx, gw, dir, lv); err != nil {
		return nil, err
	}
	a := lv.await
	gb := float64(a.Bytes) / 1e9
	return [][]float64{{float64(lv.published.Frames), float64(a.Complete), gb, float64(a.Bytes) / (1 << 20) / lv.wall.Seconds(),
		lv.gwCPU.Seconds(), lv.gwCPU.Seconds() / max(gb, 1e-9), lv.natsCPU.Seconds()}}, nil
}

// note logs what the client-load process saw, for the progress log.
func (r *runner) note(c, a reply) {
	fmt.Fprintf(r.log, "   connect: %d connected, %d failed in %s", c.Connected, c.Failed, c.Elapsed.Round(time.Millisecond))
	if c.FirstError != "" {
		fmt.Fprintf(r.log, " (first error: %s)", c.FirstError)
	}
	fmt.Fprintln(r.log)
	if a.Elapsed > 0 {
		fmt.Fprintf(r.log, "   await: %d complete after %s; frames %d, %.2f GB; lost %d, dups %d, out of order %d, gap frames %d, behind %d; closes %v, reconnects %d, resets %d; client CPU %.1f s\n",
			a.Complete, a.Elapsed.Round(time.Millisecond), a.Frames, float64(a.Bytes)/1e9, a.Lost, a.Dups, a.OutOfOrder,
			a.GapFrames, a.Behind, a.Closes, a.Reconnects, a.Resets, a.CPU.Seconds())
	}
}

// printTable prints tb as a Markdown table: BASE, HEAD, HEAD/BASE.
func printTable(out io.Writer, tb table, gws [2]gatewayBin, base, head []float64) {
	fmt.Fprintf(out, "\n%s\n\n| gateway |", tb.title)
	for _, c := range tb.cols {
		fmt.Fprintf(out, " %s |", c.name)
	}
	fmt.Fprintf(out, "\n|---|%s\n", strings.Repeat("---:|", len(tb.cols)))
	for i, row := range [][]float64{base, head} {
		fmt.Fprintf(out, "| %s |", gws[i].Label)
		for j, c := range tb.cols {
			fmt.Fprintf(out, " %.*f |", c.prec, row[j])
		}
		fmt.Fprintln(out)
	}
	fmt.Fprint(out, "| HEAD/BASE |")
	for j := range tb.cols {
		if base[j] == 0 {
			fmt.Fprint(out, " — |")
			continue
		}
		ratio := head[j] / base[j]
		if ratio != 0 && ratio < 0.1 {
			fmt.Fprintf(out, " %.2g |", ratio)
			continue
		}
		fmt.Fprintf(out, " %.2f |", ratio)
	}
	fmt.Fprintln(out)
}

// raiseNoFile lifts the open-file limit to its hard limit; the children
// (nats-server, the gateway, the client-load process) inherit it. It fails
// when even that cannot hold conns sockets in one process.
func raiseNoFile(conns int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if need := uint64(conns) + 1000; lim.Cur < need {
		return fmt.Errorf("open-file limit %d is below the %d that %d connections need: raise the hard limit (ulimit -Hn) or lower -connects", lim.Cur, need, conns)
	}
	return nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}
