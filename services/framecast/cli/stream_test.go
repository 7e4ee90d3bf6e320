package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// deployedNATS runs a NATS server with JetStream and the users of
// deploy/nats/accounts.conf, as shipped, and returns its host:port.
func deployedNATS(t *testing.T) string {
	t.Helper()
	accounts, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ADMIN", "PRODUCER", "GATEWAY", "LEAF", "SYS"} {
		t.Setenv("FRAMECAST_NATS_"+u+"_PASSWORD", strings.ToLower(u)+"-pass")
	}
	dir := t.TempDir()
	conf := fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ninclude ./accounts.conf\n", filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), accounts, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	return ns.Addr().String()
}

// `framecast stream ensure` as the admin user creates the stream and its
// bucket, updates them to changed flags saying each change, and changes
// nothing when they match; `stream verify` names what is missing or
// differs; a user without the rights (the gateway's) is refused at once
// with a message naming the user it needs.
func TestStreamEnsure(t *testing.T) {
	addr := deployedNATS(t)
	admin := "--nats-url=nats://admin:admin-pass@" + addr
	gateway := []string{"--nats-url=nats://" + addr, "--nats-user=gateway", "--nats-password=gateway-pass"}
	tests := []struct {
		name   string
		args   []string
		exit   int
		stdout []string
		stderr []string
	}{
		{"verify before ensure", append([]string{"stream", "verify"}, gateway...), ExitFailure, nil,
			[]string{"stream OUTPUTS does not exist; stream OBJ_OUTPUTS_LARGE does not exist"}},
		{"ensure as the gateway", append([]string{"stream", "ensure"}, gateway...), ExitFailure, nil,
			[]string{"refused by NATS", `Permissions Violation for Publish to "$JS.API.STREAM.`, "the admin user"}},
		{"create", []string{"stream", "ensure", admin, "--stream-max-age=1m"}, ExitOK,
			[]string{"created OUTPUTS\ncreated OBJ_OUTPUTS_LARGE\n", "match: max_age 1m0s"}, nil},
		{"update", []string{"stream", "ensure", admin}, ExitOK,
			[]string{"updated OUTPUTS max_age: 1m0s -> 15m0s\nupdated OUTPUTS duplicate_window: 1m0s -> 2m0s\nupdated OBJ_OUTPUTS_LARGE max_age: 2m0s -> 17m0s\n",
				"match: max_age 15m0s, max_bytes 1073741824, duplicate_window 2m0s, num_replicas 1, storage file, bucket max_bytes 268435456"}, nil},
		{"unchanged", []string{"stream", "ensure", admin}, ExitOK, []string{"unchanged"}, nil},
		{"verify", append([]string{"stream", "verify"}, gateway...), ExitOK, []string{"match: max_age 15m0s"}, nil},
		{"verify other flags", append([]string{"stream", "verify", "--stream-max-age=1m"}, gateway...), ExitFailure, nil,
			[]string{"OUTPUTS max_age: want 1m0s, have 15m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr := runMain(t, tt.exit, append(tt.args, "--timeout=20s")...)
			for _, want := range tt.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout got %q; want it to contain %q", stdout, want)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr got %q; want it to contain %q", stderr, want)
				}
			}
		})
	}
}
