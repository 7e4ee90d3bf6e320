package topo

import (
	"net"
	"sync"
)

// Proxy forwards loopback TCP connections to a target address until the
// test cuts it. Cut closes every open connection and refuses new ones (they
// are accepted and closed at once); Blackhole refuses new ones too but
// leaves the open ones open, forwarding nothing on them ever again, as a
// WAN that drops packets without a word does; Restore forwards new
// connections again. Its methods are safe for concurrent use; the Env
// closes it at cleanup.
type Proxy struct {
	ln     net.Listener
	target string
	closed chan struct{} // closed by Close

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	// dead are the connections a Blackhole silenced.
	dead map[net.Conn]bool
	wg   sync.WaitGroup
	once sync.Once
}

// StartProxy listens on a free loopback port and forwards to target.
func (e *Env) StartProxy(target string) *Proxy {
	e.T.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.T.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, closed: make(chan struct{}), conns: map[net.Conn]struct{}{}, dead: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	e.T.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's address as a NATS URL.
func (p *Proxy) URL() string { return "nats://" + p.Addr() }

// Cut closes every forwarded connection and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Blackhole refuses new connections and stops forwarding on the open ones
// without closing them: their ends learn of it only from their own
// timeouts. They stay silent until Close.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		p.dead[c] = true
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.once.Do(func() { close(p.closed) })
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

// track registers c, or returns false when the proxy is cut.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		delete(p.dead, c)
		c.Close()
	}
}

// silenced reports whether a Blackhole silenced c.
func (p *Proxy) silenced(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead[c]
}

// copy forwards src to dst until either fails or a Blackhole silences
// src; a silenced connection is then held open, forwarding nothing, until
// the proxy closes.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.silenced(src) {
			<-p.closed
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) forward(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.untrack(c)
		return
	}
	if !p.track(up) {
		p.untrack(c, up)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		p.copy(dst, src)
		// One direction ending ends both: NATS has no half-close.
		dst.Close()
		src.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	p.untrack(c, up)
}
