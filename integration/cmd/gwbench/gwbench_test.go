package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/wire"
)

func TestHeaderSeq(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   uint64
		ok     bool
	}{
		{"first", `{"seq":42,"output_id":"o"}`, 42, true},
		{"later", `{"output_id":"o","seq":7}`, 7, true},
		{"space", `{"seq": 9}`, 9, true},
		{"max", `{"seq":18446744073709551615}`, 1<<64 - 1, true},
		{"overflow", `{"seq":184467440737095516150}`, 0, false},
		{"none", `{"output_id":"o"}`, 0, false},
		{"not a number", `{"seq":"x"}`, 0, false},
		{"empty", ``, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := headerSeq([]byte(tt.header))
			if got != tt.want || ok != tt.ok {
				t.Errorf("headerSeq(%q) = %d, %v; want %d, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzHeaderSeq(f *testing.F) {
	f.Add([]byte(`{"seq":42}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		headerSeq(b)
	})
}

func TestMakePNG(t *testing.T) {
	for _, size := range []int{minFrameSize, 64 << 10, 256 << 10, 256<<10 + 7} {
		b, err := makePNG(size)
		if err != nil {
			t.Fatalf("makePNG(%d): %v", size, err)
		}
		if len(b) != size {
			t.Errorf("makePNG(%d) is %d bytes", size, len(b))
		}
		if _, err := encode.Probe(b); err != nil {
			t.Errorf("makePNG(%d) does not decode as the producer checks it: %v", size, err)
		}
	}
}

// TestClientAccounting feeds one client frames and control messages and
// checks what await sums up.
func TestClientAccounting(t *testing.T) {
	l := &load{}
	c := &client{l: l, start: 10}
	c.upto.Store(10)
	// 11, 12, then 14 twice; 13 comes late; 15..17 are reported as a
	// gap; 19 arrives, 18 never does; 20 and 21 are not reached.
	for _, s := range []uint64{11, 12, 14, 14, 13} {
		c.onFrame(s, 100)
	}
	c.onControl(wire.Control{Type: wire.TypeGap, From: 15, To: 17})
	c.onFrame(19, 100)
	rep := reply{Closes: map[string]int{}}
	var done []time.Duration
	c.sum(21, &rep, &done)
	want := reply{Frames: 6, Bytes: 600, Dups: 1, OutOfOrder: 1, Lost: 1, ClientsLost: 1, GapFrames: 3, Behind: 2}
	if rep.Frames != want.Frames || rep.Bytes != want.Bytes || rep.Dups != want.Dups || rep.OutOfOrder != want.OutOfOrder ||
		rep.Lost != want.Lost || rep.ClientsLost != want.ClientsLost || rep.GapFrames != want.GapFrames || rep.Behind != want.Behind {
		t.Errorf("got %+v; want %+v", rep, want)
	}
	if got := c.upto.Load(); got != 17 {
		t.Errorf("upto = %d; want 17", got)
	}
	if rep.Complete != 0 || len(done) != 0 {
		t.Errorf("complete = %d, %d completion times; want 0, 0", rep.Complete, len(done))
	}
}

// TestParseFlags: the defaults, -quick with an explicit flag winning, and
// a clear refusal for each bad value.
func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clients != 1000 || cfg.Connects != 10000 || len(cfg.Scenarios) != len(allScenarios) || cfg.Base == "" {
		t.Errorf("defaults: got clients %d, connects %d, scenarios %v, base %q", cfg.Clients, cfg.Connects, cfg.Scenarios, cfg.Base)
	}
	cfg, err = parseFlags([]string{"-quick", "-clients", "50", "-scenarios", "fanout, storm"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clients != 50 || cfg.Connects != 2000 || cfg.FanoutDuration != 5*time.Second {
		t.Errorf("-quick -clients 50: got clients %d, connects %d, fanout %v; want 50, 2000, 5s", cfg.Clients, cfg.Connects, cfg.FanoutDuration)
	}
	if want := []string{"fanout", "storm"}; !slices.Equal(cfg.Scenarios, want) {
		t.Errorf("scenarios: got %v; want %v", cfg.Scenarios, want)
	}
	cfg, err = parseFlags([]string{"-head-flags", " --gc-percent=50  --ping-interval=5s "})
	if want := []string{"--gc-percent=50", "--ping-interval=5s"}; err != nil || !slices.Equal(cfg.HeadFlags, want) {
		t.Errorf("-head-flags: got %q, %v; want %q", cfg.HeadFlags, err, want)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenarios", "storm,flood"}, `-scenarios: "flood"; allowed: storm, connects, saturation, fanout`},
		{[]string{"-scenarios", " , "}, "-scenarios names none"},
		{[]string{"-base", ""}, "-base or -base-gateway is required"},
		{[]string{"-clients", "0"}, "must be at least 1"},
		{[]string{"-connect-parallel", "-3"}, "must be at least 1"},
		{[]string{"-fanout-size", "10"}, "frame sizes must be at least"},
		{[]string{"-sat-rate", "0"}, "rates must be above 0"},
		{[]string{"-fanout-duration", "-1s"}, "-fanout-duration and -drain must be above 0"},
		{[]string{"-drain", "0s"}, "-fanout-duration and -drain must be above 0"},
		{[]string{"-settle", "-1s"}, "-settle: -1s; allowed: 0 or more"},
		{[]string{"-source-ips", "255"}, "-source-ips: 255; allowed 1..254"},
		{[]string{"storm"}, `unexpected arguments ["storm"]`},
		{[]string{"-head-flags", "--gc-percent=50 50"}, `-head-flags: "50" is not a flag`},
	} {
		_, err := parseFlags(tt.args)
		if !errors.Is(err, errInvalidFlag) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v; want errInvalidFlag saying %q", tt.args, err, tt.want)
		}
	}
	if _, err := parseFlags([]string{"-clients", "many"}); err == nil || !strings.Contains(err.Error(), `invalid value "many" for flag -clients`) {
		t.Errorf("-clients many: got %v; want the flag package's refusal", err)
	}
}
