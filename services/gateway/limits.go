package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/realclientip/realclientip-go"
)

// limits counts the connections of the gateway, of each client address
// and of each token subject, and the resumes of each client address, and
// refuses an upgrade that would pass one of Config's bounds. A zero bound
// is no bound, and nothing is counted for it. Its methods are safe for
// concurrent use.
type limits struct {
	maxConns, perIP, perSub, resumesPerIP int

	mu      sync.Mutex
	conns   int
	ips     map[string]int
	subs    map[string]int
	resumes map[string]int
}

func newLimits(cfg Config) *limits {
	return &limits{
		maxConns: cfg.MaxConns, perIP: cfg.MaxConnsPerIP, perSub: cfg.MaxConnsPerSub, resumesPerIP: cfg.MaxResumesPerIP,
		ips: make(map[string]int), subs: make(map[string]int), resumes: make(map[string]int),
	}
}

// Error codes of the limits' refusals.
const (
	codeGatewayFull = "gateway_full"
	codeIPConns     = "ip_connection_limit"
	codeSubConns    = "sub_connection_limit"
	codeIPResumes   = "ip_resume_limit"
)

// lease is one connection's hold on the limits, from before the upgrade
// until release. A resuming connection also holds a resume until its
// replay has caught up (endResume) or it ends.
type lease struct {
	l        *limits
	ip, sub  string
	resuming atomic.Bool
	released atomic.Bool
}

// acquire takes a connection (and, with resume, a resume) for a client at
// ip acting as token subject sub ("" for none), or says which bound it
// would pass.
func (l *limits) acquire(ip, sub string, resume bool) (*lease, *httpError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxConns > 0 && l.conns >= l.maxConns:
		return nil, &httpError{http.StatusServiceUnavailable, codeGatewayFull,
			fmt.Sprintf("this gateway holds %d connections, its most (--max-conns); connect to another gateway or retry later", l.conns)}
	case l.perIP > 0 && l.ips[ip] >= l.perIP:
		return nil, &httpError{http.StatusTooManyRequests, codeIPConns,
			fmt.Sprintf("client address %s holds %d connections to this gateway, the most allowed (--max-conns-per-ip); close one first", ip, l.ips[ip])}
	case l.perSub > 0 && sub != "" && l.subs[sub] >= l.perSub:
		return nil, &httpError{http.StatusTooManyRequests, codeSubConns,
			fmt.Sprintf("token subject %q holds %d connections to this gateway, the most allowed (--max-conns-per-sub); close one first", sub, l.subs[sub])}
	case resume && l.resumesPerIP > 0 && l.resumes[ip] >= l.resumesPerIP:
		return nil, &httpError{http.StatusTooManyRequests, codeIPResumes,
			fmt.Sprintf("client address %s has %d resumes (since, last) catching up on this gateway, the most allowed (--max-resumes-per-ip); retry when one has caught up", ip, l.resumes[ip])}
	}
	l.conns++
	if l.perIP > 0 {
		l.ips[ip]++
	}
	if l.perSub > 0 && sub != "" {
		l.subs[sub]++
	}
	ls := &lease{l: l, ip: ip, sub: sub}
	if resume && l.resumesPerIP > 0 {
		l.resumes[ip]++
		ls.resuming.Store(true)
	}
	return ls, nil
}

// endResume gives back the lease's resume, if it holds one.
func (ls *lease) endResume() {
	// Load first: the writer calls it each time it runs out of work.
	if !ls.resuming.Load() || !ls.resuming.CompareAndSwap(true, false) {
		return
	}
	ls.l.mu.Lock()
	decr(ls.l.resumes, ls.ip)
	ls.l.mu.Unlock()
}

// release gives back everything the lease holds; later calls do nothing.
func (ls *lease) release() {
	if !ls.released.CompareAndSwap(false, true) {
		return
	}
	ls.endResume()
	l := ls.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns--
	if l.perIP > 0 {
		decr(l.ips, ls.ip)
	}
	if l.perSub > 0 && ls.sub != "" {
		decr(l.subs, ls.sub)
	}
}

// decr lowers m[k], deleting it at zero so that the maps hold only the
// keys with connections.
func decr(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// clientIPs finds the address a request comes from: its peer's, or, when
// the peer is one of the trusted proxies, the rightmost address in
// X-Forwarded-For that is not a trusted proxy's.
type clientIPs struct {
	trusted []net.IPNet
	header  realclientip.RightmostTrustedRangeStrategy
}

func newClientIPs(proxies []string) (*clientIPs, error) {
	if len(proxies) == 0 {
		return &clientIPs{}, nil
	}
	nets, err := realclientip.AddressesAndRangesToIPNets(proxies...)
	if err != nil {
		return nil, fmt.Errorf("%w: trusted proxies: %w", ErrInvalidConfig, err)
	}
	h, err := realclientip.NewRightmostTrustedRangeStrategy("X-Forwarded-For", nets)
	if err != nil {
		return nil, fmt.Errorf("%w: trusted proxies: %w", ErrInvalidConfig, err)
	}
	return &clientIPs{trusted: nets, header: h}, nil
}

// of returns the client address of r, as the limits count it: an IPv4
// address, or the /64 network of an IPv6 address (one subscriber's
// allocation, which would otherwise hold 2^64 addresses to spread
// connections over).
func (c *clientIPs) of(r *http.Request) string {
	return limitKey(c.address(r))
}

func (c *clientIPs) address(r *http.Request) string {
	peer := realclientip.RemoteAddrStrategy{}.ClientIP(nil, r.RemoteAddr)
	if len(c.trusted) == 0 || peer == "" {
		return peer
	}
	addr, err := realclientip.ParseIPAddr(peer)
	if err != nil {
		return peer
	}
	for _, n := range c.trusted {
		if n.Contains(addr.IP) {
			if fwd := c.header.ClientIP(r.Header, r.RemoteAddr); fwd != "" {
				return fwd
			}
			break
		}
	}
	return peer
}

// limitKey is addr, or its /64 network for an IPv6 address; the zone is
// dropped.
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}
