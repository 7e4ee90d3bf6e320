package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"
)

// errInvalidFlag is wrapped by every flag validation error.
var errInvalidFlag = errors.New("invalid flag")

// Config is one run of the benchmark. The zero value of a binary path
// means "build it".
type Config struct {
	// Base and Head are the git commits the two gateways are built from;
	// Head "" is the working tree.
	Base, Head string
	// BaseGateway, HeadGateway, Producer and NATSServer are prebuilt
	// binaries that replace the builds. The producer and nats-server are
	// built from Base: they are the same for both gateways.
	BaseGateway, HeadGateway, Producer, NATSServer string
	// HeadFlags are added to the HEAD gateway's command line.
	HeadFlags []string

	Scenarios []string

	// Clients is the socket count of storm, saturation and fanout.
	Clients int
	// Connects is the live-only connection count of connects (and idle);
	// ConnectParallel bounds the dials in flight there (the storm dials
	// all at once).
	Connects, ConnectParallel int
	// StoredFrames of StoredSize bytes are on the output before the storm.
	StoredFrames, StoredSize int

	SatSize     int
	SatRate     float64
	SatDuration time.Duration

	FanoutSize     int
	FanoutRate     float64
	FanoutDuration time.Duration

	// Drain bounds the wait for clients to receive the last published
	// frame after publishing stops (storm: after the connects start).
	Drain time.Duration
	// Settle is the wait before the idle RSS is read.
	Settle time.Duration
	// SourceIPs spreads client sockets over 127.0.0.1..127.0.0.N so that
	// ephemeral ports do not run short.
	SourceIPs int
	// Reconnect makes a client closed by the gateway reconnect with
	// since=<last seq>, as clients must.
	Reconnect bool
	// Keep keeps the logs and stores of the run.
	Keep bool
}

var allScenarios = []string{"storm", "connects", "saturation", "fanout"}

// quick is the scaled-down run (-quick): under 2 minutes on 2 cores once
// the binaries are built.
var quick = map[string]string{
	"clients":          "200",
	"connects":         "2000",
	"stored-frames":    "20",
	"sat-duration":     "5s",
	"fanout-duration":  "5s",
	"drain":            "15s",
	"settle":           "2s",
	"connect-parallel": "200",
}

func parseFlags(args []string) (Config, error) {
	var (
		cfg       Config
		scenarios string
		headFlags string
		isQuick   bool
	)
	fs := flag.NewFlagSet("gwbench", flag.ContinueOnError)
	fs.StringVar(&cfg.Base, "base", "2831485", "git commit the BASE gateway (and the producer and nats-server) are built from")
	fs.StringVar(&cfg.Head, "head", "", "git commit the HEAD gateway is built from (default: the working tree)")
	fs.StringVar(&cfg.BaseGateway, "base-gateway", "", "prebuilt BASE gateway binary (skips its build)")
	fs.StringVar(&cfg.HeadGateway, "head-gateway", "", "prebuilt HEAD gateway binary (skips its build)")
	fs.StringVar(&headFlags, "head-flags", "", "flags added to the HEAD gateway's command line, space-separated, e.g. \"--gc-percent=50\"")
	fs.StringVar(&cfg.Producer, "producer", "", "prebuilt producer binary")
	fs.StringVar(&cfg.NATSServer, "nats-server", "", "prebuilt nats-server binary")
	fs.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ", "))
	fs.BoolVar(&isQuick, "quick", false, "scaled-down run (flags given explicitly still win): "+quickText())
	fs.IntVar(&cfg.Clients, "clients", 1000, "sockets in storm, saturation and fanout")
	fs.IntVar(&cfg.Connects, "connects", 10000, "live-only connections in connects/idle")
	fs.IntVar(&cfg.ConnectParallel, "connect-parallel", 500, "dials in flight during connects")
	fs.IntVar(&cfg.StoredFrames, "stored-frames", 20, "frames stored before the storm")
	fs.IntVar(&cfg.StoredSize, "stored-size", 64<<10, "bytes per stored frame")
	fs.IntVar(&cfg.SatSize, "sat-size", 256<<10, "bytes per frame in saturation")
	fs.Float64Var(&cfg.SatRate, "sat-rate", 20, "frames per second in saturation")
	fs.DurationVar(&cfg.SatDuration, "sat-duration", 20*time.Second, "publishing time in saturation")
	fs.IntVar(&cfg.FanoutSize, "fanout-size", 64<<10, "bytes per frame in fanout")
	fs.Float64Var(&cfg.FanoutRate, "fanout-rate", 5, "frames per second in fanout")
	fs.DurationVar(&cfg.FanoutDuration, "fanout-duration", 20*time.Second, "publishing time in fanout")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "bound on the wait for clients to receive the last frame")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "wait before the idle RSS is read")
	fs.IntVar(&cfg.SourceIPs, "source-ips", 4, "client source addresses 127.0.0.1..127.0.0.N")
	fs.BoolVar(&cfg.Reconnect, "reconnect", true, "clients closed by the gateway reconnect with since=<last seq>")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the run's logs and NATS stores (their directory is printed)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", errInvalidFlag, fs.Args())
	}
	if isQuick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range quick {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return Config{}, err
				}
			}
		}
	}
	cfg.HeadFlags = strings.Fields(headFlags)
	for _, f := range cfg.HeadFlags {
		if !strings.HasPrefix(f, "-") {
			return Config{}, fmt.Errorf("%w: -head-flags: %q is not a flag; want e.g. --gc-percent=50", errInvalidFlag, f)
		}
	}
	for s := range strings.SplitSeq(scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return Config{}, fmt.Errorf("%w: -scenarios: %q; allowed: %s", errInvalidFlag, s, strings.Join(allScenarios, ", "))
		}
		cfg.Scenarios = append(cfg.Scenarios, s)
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	switch {
	case c.Base == "" && c.BaseGateway == "":
		return fmt.Errorf("%w: -base or -base-gateway is required", errInvalidFlag)
	case len(c.Scenarios) == 0:
		return fmt.Errorf("%w: -scenarios names none", errInvalidFlag)
	case c.Clients < 1 || c.Connects < 1 || c.ConnectParallel < 1 || c.StoredFrames < 1:
		return fmt.Errorf("%w: -clients, -connects, -connect-parallel and -stored-frames must be at least 1", errInvalidFlag)
	case c.StoredSize < minFrameSize || c.SatSize < minFrameSize || c.FanoutSize < minFrameSize:
		return fmt.Errorf("%w: frame sizes must be at least %d bytes", errInvalidFlag, minFrameSize)
	case c.SatRate <= 0 || c.FanoutRate <= 0:
		return fmt.Errorf("%w: rates must be above 0", errInvalidFlag)
	case c.SatDuration <= 0 || c.FanoutDuration <= 0 || c.Drain <= 0:
		return fmt.Errorf("%w: -sat-duration, -fanout-duration and -drain must be above 0", errInvalidFlag)
	case c.Settle < 0:
		return fmt.Errorf("%w: -settle: %v; allowed: 0 or more", errInvalidFlag, c.Settle)
	case c.SourceIPs < 1 || c.SourceIPs > 254:
		return fmt.Errorf("%w: -source-ips: %d; allowed 1..254", errInvalidFlag, c.SourceIPs)
	}
	return nil
}

func quickText() string {
	keys := make([]string, 0, len(quick))
	for k := range quick {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "-%s=%s", k, quick[k])
	}
	return b.String()
}
