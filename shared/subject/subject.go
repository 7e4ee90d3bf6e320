package subject

import (
	"fmt"
	"strings"
)

// Subject prefixes. Producers publish to Prefix; the stream republishes to
// LivePrefix.
const (
	Prefix     = "outputs"
	LivePrefix = "live.outputs"
	// All captures every frame subject; it is the stream's subject filter.
	All = Prefix + ".>"
	// LiveAll captures every republished frame subject.
	LiveAll = LivePrefix + ".>"
)

// Broadcast is the client token of frames sent without a client_id.
const Broadcast = "~all"

// EventsToken is the output token of ComfyUI execution events: an event
// for client cid is stored at Events(cid), beside the frames, in the same
// stream, so it is ordered, kept and resumed with them. No output id
// escapes to it ('~' is always escaped).
const EventsToken = "~events"

const hexDigits = "0123456789ABCDEF"

// Escape maps an id to a subject token. It does not validate the id; the
// empty string maps to the empty string (see ClientToken for broadcast).
func Escape(id string) string {
	n := 0
	for i := 0; i < len(id); i++ {
		if !plain(id[i]) {
			n++
		}
	}
	if n == 0 {
		return id
	}
	var b strings.Builder
	b.Grow(len(id) + 2*n)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0F])
	}
	return b.String()
}

// Unescape inverts Escape. It refuses any token Escape cannot produce, so
// each token has exactly one id.
func Unescape(tok string) (string, error) {
	if strings.IndexByte(tok, '~') < 0 {
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) {
				return "", fmt.Errorf("%w: %q has byte 0x%02X outside [A-Za-z0-9_-~]", ErrInvalidToken, tok, tok[i])
			}
		}
		return tok, nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		if c != '~' || i+2 >= len(tok) {
			return "", fmt.Errorf("%w: %q has a bad escape at offset %d", ErrInvalidToken, tok, i)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		v := hi<<4 | lo
		if hi < 0 || lo < 0 || plain(byte(v)) {
			return "", fmt.Errorf("%w: %q has a bad escape at offset %d", ErrInvalidToken, tok, i)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// ClientToken is the token of client id cid: Broadcast for "", else
// Escape(cid).
func ClientToken(cid string) string {
	if cid == "" {
		return Broadcast
	}
	return Escape(cid)
}

// Frames is the subject a producer publishes frames of (oid, cid) to.
func Frames(oid, cid string) string {
	return Prefix + "." + Escape(oid) + "." + ClientToken(cid)
}

// Events is the subject an event for client cid (every client: "") is
// published to.
func Events(cid string) string {
	return Prefix + "." + EventsToken + "." + ClientToken(cid)
}

// LiveEvents is the subject the stream republishes events for cid to.
func LiveEvents(cid string) string {
	return LivePrefix + "." + EventsToken + "." + ClientToken(cid)
}

// Live is the subject the stream republishes frames of (oid, cid) to.
func Live(oid, cid string) string {
	return LivePrefix + "." + Escape(oid) + "." + ClientToken(cid)
}

// ToLive returns the live subject that stream subject subj (under Prefix)
// is republished to.
func ToLive(subj string) string { return LivePrefix + strings.TrimPrefix(subj, Prefix) }

// IsEvent reports whether subj, a stream or live subject, is an event's.
func IsEvent(subj string) bool {
	rest, ok := strings.CutPrefix(subj, LivePrefix+".")
	if !ok {
		rest, ok = strings.CutPrefix(subj, Prefix+".")
	}
	return ok && strings.HasPrefix(rest, EventsToken+".")
}

// Parse returns the ids of a frame subject, with or without the live
// prefix. A broadcast subject has cid "".
func Parse(subj string) (oid, cid string, err error) {
	rest, ok := strings.CutPrefix(subj, LivePrefix+".")
	if !ok {
		rest, ok = strings.CutPrefix(subj, Prefix+".")
	}
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not under %s or %s", ErrInvalidToken, subj, Prefix, LivePrefix)
	}
	otok, ctok, ok := strings.Cut(rest, ".")
	if !ok || otok == "" || ctok == "" || strings.IndexByte(ctok, '.') >= 0 {
		return "", "", fmt.Errorf("%w: %q is not <prefix>.<output>.<client>", ErrInvalidToken, subj)
	}
	if oid, err = Unescape(otok); err != nil {
		return "", "", err
	}
	if ctok == Broadcast {
		return oid, "", nil
	}
	if cid, err = Unescape(ctok); err != nil {
		return "", "", err
	}
	return oid, cid, nil
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
