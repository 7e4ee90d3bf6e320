package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/shared/stream"
)

// proc is a child process (topo.StartProc: its own process group, its
// output appended to a log file); stop kills the group.
type proc struct{ *topo.Proc }

func startProc(dir, name, bin string, args ...string) (*proc, error) {
	p, err := topo.StartProc(name, filepath.Join(dir, name+".log"), bin, nil, args...)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

func (p *proc) stop() { p.Kill() }

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ), 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpu is the process's user and system CPU time so far.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", p.PID())
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", p.PID(), len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", p.PID(), err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// rss is the process's resident set size in bytes.
func (p *proc) rss() (int64, error) { return p.RSS() }

// stack is one nats-server, producer and gateway, each its own process on
// loopback, for one scenario and one gateway binary.
type stack struct {
	nats, producer, gw *proc
	monURL             string // nats-server monitoring
	producerURL, gwURL string
	client             *http.Client
}

// startStack starts the three services with a fresh JetStream store in dir
// and waits until each is ready.
func startStack(ctx context.Context, bins binaries, gw gatewayBin, dir string) (*stack, error) {
	ports, err := topo.FreePorts(4)
	if err != nil {
		return nil, err
	}
	s := &stack{
		client: &http.Client{Timeout: 30 * time.Second},
		monURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	s.producerURL = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	s.gwURL = fmt.Sprintf("http://127.0.0.1:%d", ports[3])

	s.nats, err = startProc(dir, "nats-server", bins.NATS,
		"-a", "127.0.0.1", "-p", strconv.Itoa(ports[0]), "-m", strconv.Itoa(ports[1]),
		"-js", "-sd", filepath.Join(dir, "store"))
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, s.nats, s.monURL+"/healthz"); err != nil {
		s.stop()
		return nil, err
	}
	// The deployment's ensure step: newer services only verify the stream.
	if err := ensureStream(ctx, natsURL); err != nil {
		s.stop()
		return nil, err
	}
	s.producer, err = startProc(dir, "producer", bins.Producer,
		"--listen=127.0.0.1:"+strconv.Itoa(ports[2]), "--nats-url="+natsURL)
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := s.waitReady(ctx, s.producer, s.producerURL+"/readyz"); err != nil {
		s.stop()
		return nil, err
	}
	s.gw, err = startProc(dir, "gateway", gw.Path, append([]string{
		"--listen=127.0.0.1:" + strconv.Itoa(ports[3]), "--nats-url=" + natsURL, "--id=gw", "--allow-anonymous"}, gw.Args...)...)
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := s.waitReady(ctx, s.gw, s.gwURL+"/readyz"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// ensureStream creates the stream and its bucket with the default
// settings, as framecast stream ensure does.
func ensureStream(ctx context.Context, natsURL string) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = stream.Ensure(ctx, js, stream.Config{})
	return err
}

// stop kills the gateway, the producer and nats-server, in that order.
func (s *stack) stop() {
	for _, p := range []*proc{s.gw, s.producer, s.nats} {
		if p != nil {
			p.stop()
		}
	}
}

// waitReady polls url until it answers 200, p exits, or 60 s pass.
func (s *stack) waitReady(ctx context.Context, p *proc, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := s.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s (last: %s; log %s): %w", p.Name, url, last, p.Log, ctx.Err())
		case <-p.Done():
			return fmt.Errorf("%s exited before it was ready (%v); log %s", p.Name, p.Wait(0), p.Log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apiStats is the server's JetStream API counters (/jsz "api").
type apiStats struct {
	Total  uint64 `json:"total"`
	Errors uint64 `json:"errors"`
}

// api reads the JetStream API requests the server has answered since it
// started.
func (s *stack) api(ctx context.Context) (apiStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.monURL+"/jsz", nil)
	if err != nil {
		return apiStats{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return apiStats{}, fmt.Errorf("jsz: %w", err)
	}
	defer resp.Body.Close()
	var v struct {
		API *apiStats `json:"api"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return apiStats{}, fmt.Errorf("jsz: %w", err)
	}
	if v.API == nil {
		return apiStats{}, fmt.Errorf("jsz: no \"api\" object")
	}
	return *v.API, nil
}
