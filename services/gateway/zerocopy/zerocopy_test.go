//go:build linux

package zerocopy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair is a loopback TCP connection: the gateway's end and the client's.
func pair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return server.(*net.TCPConn), client
}

func rawConn(t *testing.T, c syscall.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// newSpan is a span of n random bytes in an arena of its own.
func newSpan(t *testing.T, n int) *Span {
	t.Helper()
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	sp, err := a.Put(random(n))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// TestSendTo: spans of the parts arrive whole, in order, byte for byte,
// to many sockets at once, through slow readers that fill the socket
// buffers (sendfile must wait and resume), and progress counts every
// byte.
func TestSendTo(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	head, body := []byte{0x82, 127, 0, 0, 0, 0, 0, 0x40, 0, 5}, random(4<<20+5)
	one, err := a.Put(head, nil, body)
	if err != nil {
		t.Fatal(err)
	}
	small, err := a.Put([]byte("tail"))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, head...), body...), "tail"...)
	if one.Len() != int64(len(head)+len(body)) {
		t.Fatalf("span length %d; want %d", one.Len(), len(head)+len(body))
	}

	const socks = 8
	var wg sync.WaitGroup
	for i := range socks {
		server, client := pair(t)
		rc := rawConn(t, server)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sent int
			snd := NewSender(rc, func(n int) { sent += n })
			if err := snd.Send(one); err != nil {
				t.Errorf("socket %d: %v", i, err)
			}
			if err := snd.Send(small); err != nil {
				t.Errorf("socket %d: %v", i, err)
			}
			if sent != len(want) {
				t.Errorf("socket %d: progress %d bytes; want %d", i, sent, len(want))
			}
			_ = server.CloseWrite()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got bytes.Buffer
			buf := make([]byte, 64<<10)
			for {
				if i%2 == 0 {
					time.Sleep(time.Millisecond) // a slow reader
				}
				n, err := client.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("socket %d: got %d bytes, not the spans' %d", i, got.Len(), len(want))
			}
		}()
	}
	wg.Wait()
}

// TestSendToClosedSocket: a socket closed under a send ends it with an
// error, not a hang.
func TestSendToClosedSocket(t *testing.T) {
	s := newSpan(t, 32<<20)
	server, _ := pair(t) // the client never reads
	done := make(chan error, 1)
	go func() { done <- NewSender(rawConn(t, server), func(int) {}).Send(s) }()
	time.Sleep(100 * time.Millisecond)
	_ = server.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("send to a closed socket succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("send to a closed socket still blocked after 5s")
	}
}

// TestSpansCut: a span's pages leave the memory file once the span is
// unreachable, and Held counts them until then; a closed arena refuses
// sends.
func TestSpansCut(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	keep, err := a.Put(random(5000))
	if err != nil {
		t.Fatal(err)
	}
	spans := make([]*Span, 64)
	for i := range spans {
		if spans[i], err = a.Put(random(100 << 10)); err != nil {
			t.Fatal(err)
		}
	}
	kept := roundUp(5000)
	if got, want := a.Held(), kept+64*roundUp(100<<10); got != want {
		t.Fatalf("held %d bytes; want %d", got, want)
	}
	blocks := func() int64 {
		var st syscall.Stat_t
		var err error
		_ = a.file.rc.Control(func(fd uintptr) { err = syscall.Fstat(int(fd), &st) })
		if err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	if b := blocks(); b < 64*(100<<10) {
		t.Fatalf("file holds %d bytes; want the spans' %d at least", b, 64*(100<<10))
	}
	runtime.KeepAlive(spans)
	for i := 0; a.Held() != kept; i++ {
		if i > 100 {
			t.Fatalf("held %d bytes after the spans went; want %d (the one kept)", a.Held(), kept)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if b := blocks(); b > kept {
		t.Fatalf("file holds %d bytes after the spans went; want at most %d", b, kept)
	}

	server, client := pair(t)
	snd := NewSender(rawConn(t, server), func(int) {})
	if err := snd.Send(keep); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5000)
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := snd.Send(keep); err != ErrClosed {
		t.Fatalf("send after Close: %v; want ErrClosed", err)
	}
	runtime.KeepAlive(keep)
}

// TestSendAllocs: a send allocates nothing (a fan-out makes one per frame
// per socket).
func TestSendAllocs(t *testing.T) {
	sp := newSpan(t, 20<<10)
	server, client := pair(t)
	go func() { _, _ = io.Copy(io.Discard, client) }()
	var sent int
	snd := NewSender(rawConn(t, server), func(n int) { sent += n })
	allocs := testing.AllocsPerRun(100, func() {
		if err := snd.Send(sp); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per send; want 0", allocs)
	}
	if sent != 101*(20<<10) {
		t.Fatalf("progress %d bytes; want %d", sent, 101*(20<<10))
	}
}
