package envcheck

import (
	"flag"
	"reflect"
	"testing"
)

func TestUnknown(t *testing.T) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.String("nats-url", "", "")
	fs.Int("stream-replicas", 1, "")
	fs.Bool("allow-anonymous", false, "")
	environ := []string{
		"PATH=/usr/bin",
		"FRAMECAST_NATS_URL=nats://a:4222",
		"FRAMECAST_STREAM_REPLICA=3",      // one letter short
		"FRAMECAST_ALLOW_ANONYMUS=1",      // one letter off
		"FRAMECAST_PRODUCER_URL=http://x", // another program's
		"FRAMECAST_STREAM_REPLICAS=3",
		"FRAMECAST_STREAM_REPLICA=4", // repeated: reported once
		"framecast_nats_url=x",       // not the prefix
		"FRAMECAST_=x",
		"NOEQUALS",
	}
	got := Unknown(fs, "FRAMECAST", environ)
	want := []Var{
		{Name: "FRAMECAST_", Suggest: ""},
		{Name: "FRAMECAST_ALLOW_ANONYMUS", Suggest: "FRAMECAST_ALLOW_ANONYMOUS"},
		{Name: "FRAMECAST_PRODUCER_URL", Suggest: ""},
		{Name: "FRAMECAST_STREAM_REPLICA", Suggest: "FRAMECAST_STREAM_REPLICAS"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Unknown:\n got %+v\nwant %+v", got, want)
	}
	if got := Unknown(fs, "FRAMECAST", []string{"FRAMECAST_NATS_URL=x", "HOME=/root"}); len(got) != 0 {
		t.Errorf("only known variables: got %+v; want none", got)
	}
}

func TestEnvName(t *testing.T) {
	for _, tt := range []struct{ prefix, flag, want string }{
		{"FRAMECAST", "nats-url", "FRAMECAST_NATS_URL"},
		{"framecast_", "stream-max-age", "FRAMECAST_STREAM_MAX_AGE"},
		{"FRAMECAST", "id", "FRAMECAST_ID"},
	} {
		if got := EnvName(tt.prefix, tt.flag); got != tt.want {
			t.Errorf("EnvName(%q, %q) = %q; want %q", tt.prefix, tt.flag, got, tt.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"REPLICA", "REPLICAS", 1}, {"abc", "abc", 0},
	} {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestAttrs(t *testing.T) {
	if got, want := (Var{Name: "A"}).Attrs(), []any{"name", "A"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Attrs = %v; want %v", got, want)
	}
	if got, want := (Var{Name: "A", Suggest: "B"}).Attrs(), []any{"name", "A", "did_you_mean", "B"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Attrs = %v; want %v", got, want)
	}
}
