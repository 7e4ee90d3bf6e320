package gateway

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/framecast/framecast/services/gateway/replay"
)

// FuzzParseResume: any query either parses or yields a 400 with a message;
// the native endpoint passes only known parameters, each once.
func FuzzParseResume(f *testing.F) {
	for _, s := range []string{"since=1", "last=5", "since=1&last=2", "since=x", "last=0", "last=99999999999999999999",
		"since=4&epoch=1764532134123456789", "epoch=12", "since=1&epoch=x1", "since=1&epoch=",
		"rendition=preview", "last=3&rendition=all", "rendition=Full", "rendition="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if herr := checkParams(q, nativeParams, true); herr == nil {
			for k, v := range q {
				if len(v) != 1 || !slices.Contains(nativeParams, k) {
					t.Fatalf("parameter %q=%q passed; want each known parameter at most once", k, v)
				}
			}
		} else if herr.status != 400 || herr.msg == "" {
			t.Fatalf("got %d %q; want 400 with a message", herr.status, herr.msg)
		}
		if rs, herr := parseRenditions(q); herr != nil {
			if herr.status != 400 || !strings.Contains(herr.msg, "allowed: full (the default), preview, all") {
				t.Fatalf("got %d %q; want 400 naming the allowed renditions", herr.status, herr.msg)
			}
		} else if v := q.Get("rendition"); rs > replay.AllRenditions || !slices.Contains([]string{"", "full", "preview", "all"}, v) {
			t.Fatalf("rendition %q taken as %d", v, rs)
		}
		since, last, epoch, herr := parseResume(q, true)
		if herr != nil {
			if herr.status != 400 || herr.msg == "" {
				t.Fatalf("got %d %q; want 400 with a message", herr.status, herr.msg)
			}
			return
		}
		if epoch != "" && (since == nil || len(epoch) > maxEpoch || strings.Trim(epoch, "0123456789") != "") {
			t.Fatalf("got epoch %q with since %v; want digits, and only with since", epoch, since)
		}
		if since != nil && last != 0 {
			t.Fatalf("got since %d and last %d; want at most one", *since, last)
		}
		if last < 0 || last > MaxLast {
			t.Fatalf("got last %d; want 0..%d", last, MaxLast)
		}
	})
}
