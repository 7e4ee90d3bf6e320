package gateway

import (
	"net/url"
	"testing"
)

// FuzzParseResume: any query either parses or yields a 400 with a message.
func FuzzParseResume(f *testing.F) {
	for _, s := range []string{"since=1", "last=5", "since=1&last=2", "since=x", "last=0", "last=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		since, last, herr := parseResume(q, true)
		if herr != nil {
			if herr.status != 400 || herr.msg == "" {
				t.Fatalf("got %d %q; want 400 with a message", herr.status, herr.msg)
			}
			return
		}
		if since != nil && last != 0 {
			t.Fatalf("got since %d and last %d; want at most one", *since, last)
		}
		if last < 0 || last > MaxLast {
			t.Fatalf("got last %d; want 0..%d", last, MaxLast)
		}
	})
}
