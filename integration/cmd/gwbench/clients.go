package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/framecast/framecast/shared/wire"
)

// clientsRole is the first argument that makes gwbench the client-load
// process: it reads requests, one JSON object a line, from its standard
// input, answers each with one JSON line on its standard output, and
// exits when its standard input closes.
const clientsRole = "clients"

// request is one instruction to the client-load process.
type request struct {
	// Op is "connect" (dial N clients, answer once each has its hello or
	// failed), "await" (wait until every client holds Target, or Timeout)
	// or "close" (close every socket).
	Op     string `json:"op"`
	URL    string `json:"url,omitempty"` // the gateway, http://host:port
	Output string `json:"output,omitempty"`
	N      int    `json:"n,omitempty"`
	// Since is the resume point of every client; nil connects live only.
	Since *uint64 `json:"since,omitempty"`
	// Parallel bounds the dials in flight; 0 dials all at once.
	Parallel int `json:"parallel,omitempty"`
	// Target is the last sequence published. Known at connect (the
	// storm), each client's completion time is taken from the connect's
	// start.
	Target uint64 `json:"target,omitempty"`
	// Expect sizes each client's record of sequences, so that frames
	// cost no allocation.
	Expect    int           `json:"expect,omitempty"`
	Timeout   time.Duration `json:"timeout,omitempty"`
	Reconnect bool          `json:"reconnect,omitempty"`
	SourceIPs int           `json:"source_ips,omitempty"`
}

// reply answers a request.
type reply struct {
	Err string `json:"err,omitempty"`

	// connect
	Connected  int           `json:"connected"`
	Failed     int           `json:"failed"`
	FirstError string        `json:"first_error,omitempty"`
	Elapsed    time.Duration `json:"elapsed"` // connect: until the last hello; await: the wait

	// await
	Complete int `json:"complete"` // clients holding (or told the gap of) every frame up to Target
	// DoneP50 and DoneMax are over complete clients, from the connect's
	// start; set when Target was known at connect.
	DoneP50, DoneMax time.Duration
	Frames, Bytes    int64
	Dups             int64 `json:"dups"`         // frames received again
	OutOfOrder       int64 `json:"out_of_order"` // frames below one received before them
	Lost             int64 `json:"lost"`         // holes below a client's last frame, with no gap message
	ClientsLost      int   `json:"clients_lost"`
	GapFrames        int64 `json:"gap_frames"` // sequences reported by gap messages
	Behind           int64 `json:"behind"`     // frames up to Target not reached at the end
	// Closes counts the gateway's closes by code ("4008"; "drop" for a
	// connection lost without a close frame).
	Closes        map[string]int `json:"closes,omitempty"`
	ClientsClosed int            `json:"clients_closed"` // clients closed at least once
	Reconnects    int            `json:"reconnects"`     // dials after a close, failed ones included
	Resets        int            `json:"resets"`
	CPU           time.Duration  `json:"cpu"` // this process, so far
}

// runClients serves requests from in until it closes.
func runClients(in io.Reader, out io.Writer) error {
	l := &load{}
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	defer l.close()
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var rep reply
		switch req.Op {
		case "connect":
			rep = l.connect(req)
		case "await":
			rep = l.await(req)
		case "close":
			l.close()
		default:
			rep.Err = fmt.Sprintf("unknown op %q; allowed: connect, await, close", req.Op)
		}
		rep.CPU = selfCPU()
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
}

// load is the client-load process's set of clients.
type load struct {
	base      string // ws URL up to and including "client_id=c"
	reconnect bool
	http      []*http.Client // one per source address
	started   time.Time
	target    atomic.Uint64
	closing   atomic.Bool
	clients   []*client
	wg        sync.WaitGroup // one per client goroutine
}

func (l *load) connect(req request) reply {
	if l.clients != nil {
		return reply{Err: "connect may be sent once"}
	}
	l.base = "ws" + req.URL[len("http"):] + "/v1/ws?output_id=" + req.Output + "&client_id=c"
	l.reconnect = req.Reconnect
	l.target.Store(req.Target)
	for i := range max(req.SourceIPs, 1) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}}
		l.http = append(l.http, &http.Client{Transport: &http.Transport{DialContext: d.DialContext}})
	}
	l.clients = make([]*client, req.N)
	var (
		connected sync.WaitGroup
		mu        sync.Mutex
		rep       reply
	)
	parallel := req.Parallel
	if parallel <= 0 {
		parallel = req.N
	}
	gate := make(chan struct{}, parallel)
	l.started = time.Now()
	for i := range l.clients {
		c := &client{l: l, id: i, got: make([]uint64, 0, (req.Expect+64)/64+1)}
		l.clients[i] = c
		gate <- struct{}{}
		connected.Add(1)
		l.wg.Add(1)
		go c.run(req.Since, func(err error) {
			<-gate
			mu.Lock()
			if err != nil {
				rep.Failed++
				if rep.FirstError == "" {
					rep.FirstError = err.Error()
				}
			} else {
				rep.Connected++
			}
			mu.Unlock()
			connected.Done()
		})
	}
	connected.Wait()
	rep.Elapsed = time.Since(l.started)
	return rep
}

// await waits until every client that is still connected (or
// reconnecting) holds every frame up to req.Target, or req.Timeout passes,
// then sums up what the clients received.
func (l *load) await(req request) reply {
	start := time.Now()
	if req.Target > 0 {
		l.target.Store(req.Target)
	}
	target := l.target.Load()
	deadline := start.Add(req.Timeout)
	for time.Now().Before(deadline) {
		waiting := false
		for _, c := range l.clients {
			if !c.dead.Load() && c.upto.Load() < target {
				waiting = true
				break
			}
		}
		if !waiting {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep := reply{Elapsed: time.Since(start), Closes: map[string]int{}}
	var done []time.Duration
	for _, c := range l.clients {
		c.sum(target, &rep, &done)
	}
	if len(done) > 0 {
		slices.Sort(done)
		rep.DoneP50, rep.DoneMax = done[len(done)/2], done[len(done)-1]
	}
	return rep
}

// close closes every socket and waits for the client goroutines.
func (l *load) close() {
	l.closing.Store(true)
	for _, c := range l.clients {
		c.mu.Lock()
		if c.conn != nil {
			_ = c.conn.CloseNow()
		}
		c.mu.Unlock()
	}
	l.wg.Wait()
}

// span is a range of sequences a gap message reported.
type span struct{ from, to uint64 }

// client is one websocket client: one goroutine dials, reads and
// reconnects it. Its record of frames is guarded by mu, which the reader
// holds for a few instructions per frame and await for the summary.
type client struct {
	l  *load
	id int
	// upto is the highest sequence such that every one after start and
	// up to it was received or reported by a gap message.
	upto atomic.Uint64
	dead atomic.Bool // closed, and not reconnecting

	mu         sync.Mutex
	conn       *websocket.Conn
	hello      bool
	start      uint64   // the first hello's since: frames after it are expected
	got        []uint64 // bit per sequence received
	gaps       []span
	last       uint64 // sequence of the last frame received
	frames     int64
	bytes      int64
	dups, ooo  int64
	resets     int
	reconnects int
	closes     []int // close codes; -1 for a connection lost without one
	doneAt     time.Duration

	buf [512]byte // the reader's; frame headers beyond it are skipped
}

// run dials with since (nil: live only), reports the outcome to
// connected, then reads until the load closes, reconnecting after the
// gateway closes it if the load says so.
func (c *client) run(since *uint64, connected func(error)) {
	defer c.l.wg.Done()
	err := c.dial(since)
	connected(err)
	for err == nil {
		err = c.read()
		if c.l.closing.Load() {
			return
		}
		c.mu.Lock()
		c.closes = append(c.closes, int(websocket.CloseStatus(err)))
		c.mu.Unlock()
		if !c.l.reconnect {
			break
		}
		err = c.redial()
	}
	c.dead.Store(true)
}

// redial reconnects with since=<last seq> (the first hello's since before
// any frame), backing off from 100 ms to 2 s while dials fail.
func (c *client) redial() error {
	wait := 100 * time.Millisecond
	for !c.l.closing.Load() {
		time.Sleep(wait)
		c.mu.Lock()
		since := max(c.last, c.start)
		c.reconnects++
		c.mu.Unlock()
		if err := c.dial(&since); err == nil {
			return nil
		}
		wait = min(2*wait, 2*time.Second)
	}
	return net.ErrClosed
}

// dial connects and reads the hello.
func (c *client) dial(since *uint64) error {
	u := c.l.base + strconv.Itoa(c.id)
	if since != nil {
		u += "&since=" + strconv.FormatUint(*since, 10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:      c.l.http[c.id%len(c.l.http)],
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return err
	}
	// Frames may be as large as the producer allows.
	conn.SetReadLimit(-1)
	typ, r, err := conn.Reader(ctx)
	if err == nil && typ != websocket.MessageText {
		err = fmt.Errorf("first message is binary; want the hello")
	}
	var hello wire.Control
	if err == nil {
		hello, err = c.control(r)
	}
	if err == nil && hello.Type != wire.TypeHello {
		err = fmt.Errorf("first message is %q; want hello", hello.Type)
	}
	if err != nil {
		_ = conn.CloseNow()
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	if !c.hello {
		c.hello = true
		if hello.Since != nil {
			c.start = *hello.Since
			c.upto.Store(c.start)
		}
	}
	if c.l.closing.Load() {
		_ = conn.CloseNow()
	}
	return nil
}

// control reads a text message into c.buf and decodes it.
func (c *client) control(r io.Reader) (wire.Control, error) {
	n, err := io.ReadFull(r, c.buf[:])
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	} else if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return wire.Control{}, err
	}
	return wire.DecodeControl(c.buf[:n])
}

// read reads messages until the connection fails or closes.
func (c *client) read() error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	for {
		typ, r, err := conn.Reader(context.Background())
		if err != nil {
			return err
		}
		if typ == websocket.MessageText {
			msg, err := c.control(r)
			if err != nil {
				return err
			}
			c.onControl(msg)
			continue
		}
		if _, err := io.ReadFull(r, c.buf[:4]); err != nil {
			return err
		}
		n := min(int(binary.BigEndian.Uint32(c.buf[:4])), len(c.buf))
		if _, err := io.ReadFull(r, c.buf[:n]); err != nil {
			return err
		}
		seq, ok := headerSeq(c.buf[:n])
		if !ok {
			return fmt.Errorf("frame header without a seq: %.80q", c.buf[:n])
		}
		rest, err := io.Copy(io.Discard, r)
		if err != nil {
			return err
		}
		c.onFrame(seq, int64(4+n)+rest)
	}
}

func (c *client) onControl(m wire.Control) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Type {
	case wire.TypeGap:
		c.gaps = append(c.gaps, span{m.From, m.To})
		c.advance()
	case wire.TypeReset:
		c.resets++
	}
}

func (c *client) onFrame(seq uint64, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames++
	c.bytes += size
	if c.has(seq) {
		c.dups++
		return
	}
	if seq < c.last {
		c.ooo++
	}
	c.last = max(c.last, seq)
	i := int(seq / 64)
	if i >= len(c.got) {
		c.got = append(c.got, make([]uint64, i+1-len(c.got))...)
	}
	c.got[i] |= 1 << (seq % 64)
	c.advance()
}

func (c *client) has(seq uint64) bool {
	i := int(seq / 64)
	return i < len(c.got) && c.got[i]&(1<<(seq%64)) != 0
}

// gapped returns the end of the gap span holding seq, or 0.
func (c *client) gapped(seq uint64) uint64 {
	for _, g := range c.gaps {
		if g.from <= seq && seq <= g.to {
			return g.to
		}
	}
	return 0
}

// advance moves upto past what was received or reported, and notes when
// the client first completes.
func (c *client) advance() {
	upto := c.upto.Load()
	for {
		if c.has(upto + 1) {
			upto++
		} else if to := c.gapped(upto + 1); to > 0 {
			upto = to
		} else {
			break
		}
	}
	c.upto.Store(upto)
	if t := c.l.target.Load(); t > 0 && upto >= t && c.doneAt == 0 {
		c.doneAt = time.Since(c.l.started)
	}
}

// sum adds the client's record up to target to rep.
func (c *client) sum(target uint64, rep *reply, done *[]time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upto.Load() >= target {
		rep.Complete++
		if c.doneAt > 0 {
			*done = append(*done, c.doneAt)
		}
	}
	var lost int64
	for s := c.start + 1; s <= target; s++ {
		switch {
		case c.has(s):
		case c.gapped(s) > 0:
			rep.GapFrames++
		case s < c.last:
			lost++
		default:
			rep.Behind++
		}
	}
	if lost > 0 {
		rep.Lost += lost
		rep.ClientsLost++
	}
	rep.Frames += c.frames
	rep.Bytes += c.bytes
	rep.Dups += c.dups
	rep.OutOfOrder += c.ooo
	rep.Resets += c.resets
	rep.Reconnects += c.reconnects
	if len(c.closes) > 0 {
		rep.ClientsClosed++
	}
	for _, code := range c.closes {
		k := strconv.Itoa(code)
		if code < 0 {
			k = "drop"
		}
		rep.Closes[k]++
	}
}

var seqKey = []byte(`"seq":`)

// headerSeq finds the seq of a native frame's JSON header without
// decoding the rest of it.
func headerSeq(h []byte) (uint64, bool) {
	i := bytes.Index(h, seqKey)
	if i < 0 {
		return 0, false
	}
	h = bytes.TrimLeft(h[i+len(seqKey):], " ")
	var n uint64
	d := 0
	for ; d < len(h) && '0' <= h[d] && h[d] <= '9'; d++ {
		hi, lo := bits.Mul64(n, 10)
		if hi != 0 {
			return 0, false
		}
		n = lo + uint64(h[d]-'0')
	}
	return n, d > 0
}

// selfCPU is this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
