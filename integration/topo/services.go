package topo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Service is a producer or gateway process listening on a loopback port.
type Service struct {
	*Proc
	// URL is the service's base URL, http://127.0.0.1:<port>.
	URL  string
	Port int

	env  *Env
	bin  string
	args []string
}

// StartProducer runs a producer on a free port against natsURL; extra are
// added flags (e.g. "--stream-replicas=3").
func (e *Env) StartProducer(name, natsURL string, extra ...string) *Service {
	e.T.Helper()
	port := e.Ports(1)[0]
	args := append([]string{
		"--listen=127.0.0.1:" + strconv.Itoa(port),
		"--nats-url=" + natsURL,
	}, extra...)
	return e.startService(name, e.Bins.Producer, port, args)
}

// StartGateway runs a gateway with id name on a free port against natsURL;
// extra are added flags (e.g. "--allow-anonymous").
func (e *Env) StartGateway(name, natsURL string, extra ...string) *Service {
	e.T.Helper()
	port := e.Ports(1)[0]
	args := append([]string{
		"--listen=127.0.0.1:" + strconv.Itoa(port),
		"--nats-url=" + natsURL,
		"--id=" + name,
	}, extra...)
	return e.startService(name, e.Bins.Gateway, port, args)
}

func (e *Env) startService(name, bin string, port int, args []string) *Service {
	e.T.Helper()
	s := &Service{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, env: e, bin: bin, args: args}
	s.Proc = e.Start(name, bin, nil, args...)
	s.WaitReady()
	return s
}

// Restart starts the service again with the same port and flags, after
// its previous process has exited.
func (s *Service) Restart() {
	s.env.T.Helper()
	s.Proc = s.env.Start(s.Name, s.bin, nil, s.args...)
	s.WaitReady()
}

// WaitReady waits up to 60s until GET /readyz answers 200.
func (s *Service) WaitReady() {
	s.env.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitStatus(ctx, "/readyz", http.StatusOK); err != nil {
		s.env.T.Fatalf("%s not ready: %v", s.Name, err)
	}
}

// Status is the HTTP status of GET path, or an error.
func (s *Service) Status(ctx context.Context, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WaitStatus polls GET path until it answers want, the process exits or
// ctx ends.
func (s *Service) WaitStatus(ctx context.Context, path string, want int) error {
	var last string
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		code, err := s.Status(rctx, path)
		cancel()
		if err == nil && code == want {
			return nil
		}
		last = fmt.Sprintf("status %d, error %v", code, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("GET %s: got %s; want %d: %w", path, last, want, ctx.Err())
		case <-s.Done():
			return fmt.Errorf("GET %s: process exited (%v); last %s", path, s.Wait(0), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
