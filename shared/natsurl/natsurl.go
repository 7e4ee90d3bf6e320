// Package natsurl checks the NATS server URLs a service is given, so that a
// typo fails at start with a clear message instead of a client that retries
// an unreachable address forever.
package natsurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid NATS URL")

// Validate checks a comma-separated list of NATS URLs: each needs a nats,
// tls, ws or wss scheme (or none, meaning nats) and a host.
func Validate(list string) error {
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		s := u
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		pu, err := url.Parse(s)
		if err != nil || pu.Hostname() == "" || strings.ContainsAny(u, " \t") || (pu.Path != "" && pu.Path != "/") {
			return fmt.Errorf("%w: %q; want nats://host:port, comma-separated for a cluster", ErrInvalid, u)
		}
		switch pu.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%w: %q has scheme %q; allowed: nats, tls, ws, wss", ErrInvalid, u, pu.Scheme)
		}
	}
	return nil
}
