package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// loadProc is the client-load child process (gwbench clients) seen from
// the orchestrator: requests go to its standard input, replies come from
// its standard output, its standard error goes to clients.log.
type loadProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	enc  *json.Encoder
	dec  *json.Decoder
	log  string
	done chan struct{}
}

func startLoad(dir string) (*loadProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "clients.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, clientsRole)
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start the client-load process: %w", err)
	}
	l := &loadProc{cmd: cmd, in: in, enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out)), log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(l.done)
	}()
	return l, nil
}

// errLoad wraps the client-load process's failures.
var errLoad = errors.New("client-load process")

// do sends req and waits for its reply.
func (l *loadProc) do(req request) (reply, error) {
	if err := l.enc.Encode(req); err != nil {
		return reply{}, fmt.Errorf("%w: send %s: %v (log %s)", errLoad, req.Op, err, l.log)
	}
	var rep reply
	if err := l.dec.Decode(&rep); err != nil {
		return reply{}, fmt.Errorf("%w: %s: %v (log %s)", errLoad, req.Op, err, l.log)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("%w: %s: %s", errLoad, req.Op, rep.Err)
	}
	return rep, nil
}

// stop closes the sockets, ends the process (killing it after 30 s) and
// returns the CPU time it used.
func (l *loadProc) stop() time.Duration {
	rep, _ := l.do(request{Op: "close"})
	l.in.Close()
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.done
	}
	return rep.CPU
}
