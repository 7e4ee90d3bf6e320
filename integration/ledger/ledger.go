// Package ledger keeps the fault suite's exact accounts: which frames the
// producer acknowledged, which frames each client's application saw, and,
// at the end of a scenario, which were lost, duplicated, out of order or
// reported as a gap. Every frame carries a unique id in its pixels (see
// Pixels and ID) so a delivery is matched to its publish without trusting
// the system under test.
//
// Sequences are comparable only within one stream epoch: a stream deleted
// and created again starts over at 1. A client told so (a reset) enters
// the new epoch, and its order and gaps are kept per epoch.
package ledger

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Frame is one frame as the test knows it.
type Frame struct {
	ID       uint64
	Seq      uint64
	OutputID string
	ClientID string // "" for broadcast
	// Epoch is the stream epoch Seq belongs to. On an acknowledged frame
	// "" means the scenario does not track epochs: it matches any.
	Epoch string
}

// Ledger is one scenario's accounts. Its methods are safe for concurrent
// use.
type Ledger struct {
	Scenario string

	mu      sync.Mutex
	acked   map[uint64]Frame
	clients []*Client
}

// New returns an empty ledger for scenario.
func New(scenario string) *Ledger {
	return &Ledger{Scenario: scenario, acked: map[uint64]Frame{}}
}

// Ack records that the producer acknowledged f.
func (l *Ledger) Ack(f Frame) {
	l.mu.Lock()
	l.acked[f.ID] = f
	l.mu.Unlock()
}

// Acked is the number of frames acknowledged so far.
func (l *Ledger) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// Client adds a client whose application should see every acknowledged
// frame for which wants is true.
func (l *Ledger) Client(name string, wants func(Frame) bool) *Client {
	c := &Client{Name: name, wants: wants, count: map[uint64]int{}, last: map[string]uint64{}}
	l.mu.Lock()
	l.clients = append(l.clients, c)
	l.mu.Unlock()
	return c
}

// Client is what one client's application saw. Its methods are safe for
// concurrent use.
type Client struct {
	Name  string
	wants func(Frame) bool

	mu         sync.Mutex
	epoch      string // the epoch the client is in; "" before its first hello
	resets     int
	seen       []Frame
	count      map[uint64]int    // id -> times seen
	last       map[string]uint64 // epoch and subject key -> last seq seen
	outOfOrder int
	gaps       []gap
	notes      []string
}

// gap is a range of sequences of one epoch the client was told it
// will not get.
type gap struct {
	epoch    string
	from, to uint64
}

// Hello records the epoch a connection's hello named. The first one puts
// the client in that epoch; a later one that differs changes nothing
// (the gateway follows it with a reset).
func (c *Client) Hello(epoch string) {
	c.mu.Lock()
	if c.epoch == "" {
		c.epoch = epoch
	}
	c.mu.Unlock()
}

// Reset records that the client was moved into epoch, with frames after
// since to follow: frames of that epoch up to since count as reported,
// like a gap.
func (c *Client) Reset(epoch string, since uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch = epoch
	c.resets++
	if since > 0 {
		c.gaps = append(c.gaps, gap{epoch, 1, since})
	}
}

// Epoch is the epoch the client is in.
func (c *Client) Epoch() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// Resets is the number of resets recorded.
func (c *Client) Resets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}

// Saw records that the application received f, in f.Epoch or, when that
// is empty, in the client's epoch.
func (c *Client) Saw(f Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Epoch == "" {
		f.Epoch = c.epoch
	}
	c.seen = append(c.seen, f)
	c.count[f.ID]++
	key := f.Epoch + "\x00" + f.OutputID + "\x00" + f.ClientID
	if f.Seq <= c.last[key] {
		c.outOfOrder++
	}
	c.last[key] = max(c.last[key], f.Seq)
}

// Gap records that the client was told frames from..to of its epoch are
// past the window: those frames count as reported, not lost.
func (c *Client) Gap(from, to uint64) {
	c.mu.Lock()
	c.gaps = append(c.gaps, gap{c.epoch, from, to})
	c.mu.Unlock()
}

// Note records a remark shown in the report (e.g. a close code).
func (c *Client) Note(format string, args ...any) {
	c.mu.Lock()
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// Seen is the number of frames received, duplicates included.
func (c *Client) Seen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Frames is a copy of what the client saw, in arrival order.
func (c *Client) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.seen...)
}

// Gaps is a copy of the ranges the client was told about (gaps, and the
// start of an epoch a reset skipped).
func (c *Client) Gaps() [][2]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	gs := make([][2]uint64, len(c.gaps))
	for i, g := range c.gaps {
		gs[i] = [2]uint64{g.from, g.to}
	}
	return gs
}

// inGap reports whether acknowledged frame f lies in a range the client
// was told about.
func (c *Client) inGap(f Frame) bool {
	for _, g := range c.gaps {
		if sameEpoch(f.Epoch, g.epoch) && f.Seq >= g.from && f.Seq <= g.to {
			return true
		}
	}
	return false
}

// sameEpoch reports whether a frame acknowledged in epoch acked may be
// one seen or reported in epoch seen: "" on the acknowledged side
// matches any.
func sameEpoch(acked, seen string) bool { return acked == "" || acked == seen }

// Report is a scenario's result.
type Report struct {
	Scenario string
	Clients  int
	Acked    int // frames the producer acknowledged
	Expected int // sum over clients of the acknowledged frames each should see
	// Delivered counts, over clients, the distinct acknowledged frames each
	// saw that it wanted.
	Delivered  int
	Lost       int // expected, not seen and not reported as a gap
	Gapped     int // expected, not seen, reported as a gap
	Duplicated int // extra sightings of a frame by the same client
	// OutOfOrder counts frames whose seq did not exceed the previous on
	// its subject in its epoch, and frames handed on in another epoch
	// than the one they were stored in.
	OutOfOrder int
	Foreign    int // frames a client saw that it should not have
	// Details names the first problems found, per client.
	Details []string
}

// Report compares the accounts.
func (l *Ledger) Report() Report {
	l.mu.Lock()
	acked := make([]Frame, 0, len(l.acked))
	for _, f := range l.acked {
		acked = append(acked, f)
	}
	clients := append([]*Client(nil), l.clients...)
	l.mu.Unlock()
	sort.Slice(acked, func(i, j int) bool { return acked[i].ID < acked[j].ID })
	byID := make(map[uint64]Frame, len(acked))
	for _, f := range acked {
		byID[f.ID] = f
	}

	r := Report{Scenario: l.Scenario, Clients: len(clients), Acked: len(acked)}
	for _, c := range clients {
		c.mu.Lock()
		var lost []uint64
		for _, f := range acked {
			if !c.wants(f) {
				continue
			}
			r.Expected++
			switch {
			case c.count[f.ID] > 0:
				r.Delivered++
			case c.inGap(f):
				r.Gapped++
			default:
				r.Lost++
				lost = append(lost, f.Seq)
			}
		}
		dups := 0
		for _, n := range c.count {
			dups += n - 1
		}
		// A frame's true output and client are what it was published to,
		// whatever the delivered header says.
		foreign, misplaced := 0, 0
		for _, f := range c.seen {
			truth, ok := byID[f.ID]
			if ok && !sameEpoch(truth.Epoch, f.Epoch) {
				misplaced++
			}
			if ok {
				f = truth
			}
			if !c.wants(f) {
				foreign++
			}
		}
		r.Duplicated += dups
		r.OutOfOrder += c.outOfOrder + misplaced
		r.Foreign += foreign
		if len(lost) > 0 || dups > 0 || c.outOfOrder > 0 || misplaced > 0 || foreign > 0 {
			if len(lost) > 10 {
				lost = lost[:10]
			}
			r.Details = append(r.Details, fmt.Sprintf("%s: lost seqs %v (first 10), duplicates %d, out of order %d, in another epoch %d, foreign %d, gaps %v, notes %v",
				c.Name, lost, dups, c.outOfOrder, misplaced, foreign, c.gaps, c.notes))
		}
		c.mu.Unlock()
	}
	return r
}

// Missing is the number of acknowledged frames c wants and has neither
// seen nor been told about in a gap.
func (l *Ledger) Missing(c *Client) int {
	l.mu.Lock()
	acked := make([]Frame, 0, len(l.acked))
	for _, f := range l.acked {
		acked = append(acked, f)
	}
	l.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range acked {
		if c.wants(f) && c.count[f.ID] == 0 && !c.inGap(f) {
			n++
		}
	}
	return n
}

// Wait polls until no client misses a frame (see Missing) or ctx ends; it
// returns ctx's error then.
func (l *Ledger) Wait(ctx context.Context) error {
	l.mu.Lock()
	cs := append([]*Client(nil), l.clients...)
	l.mu.Unlock()
	return l.WaitFor(ctx, cs...)
}

// WaitFor is Wait for the clients cs only.
func (l *Ledger) WaitFor(ctx context.Context, cs ...*Client) error {
	for {
		missing := 0
		for _, c := range cs {
			missing += l.Missing(c)
		}
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for every acknowledged frame: %d deliveries missing: %w", missing, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Header is the table header matching Row.
const Header = "| scenario | clients | acked | expected | delivered | lost | duplicated | out of order | gap-reported |\n|---|---|---|---|---|---|---|---|---|"

// Row is r as one Markdown table row.
func (r Report) Row() string {
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %d | %d |",
		r.Scenario, r.Clients, r.Acked, r.Expected, r.Delivered, r.Lost, r.Duplicated, r.OutOfOrder, r.Gapped)
}

// EnvFile names the environment variable whose value, when set, is a file
// every report row is appended to.
const EnvFile = "FRAMECAST_ACCOUNTING"

// Log prints r's row (and details) on t and appends the row to the file
// named by $FRAMECAST_ACCOUNTING.
func (r Report) Log(t testing.TB) {
	t.Helper()
	t.Logf("accounting:\n%s\n%s", Header, r.Row())
	for _, d := range r.Details {
		t.Logf("accounting detail: %s", d)
	}
	path := os.Getenv(EnvFile)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("accounting file: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, r.Row())
}

// Assert fails t unless nothing was lost, duplicated, out of order or
// delivered to the wrong client.
func (r Report) Assert(t testing.TB) {
	t.Helper()
	checks := []struct {
		name string
		got  int
	}{
		{"lost", r.Lost}, {"duplicated", r.Duplicated}, {"out of order", r.OutOfOrder}, {"foreign", r.Foreign},
	}
	var bad []string
	for _, c := range checks {
		if c.got != 0 {
			bad = append(bad, fmt.Sprintf("%s: got %d; want 0", c.name, c.got))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: %s", r.Scenario, strings.Join(bad, ", "))
	}
}
