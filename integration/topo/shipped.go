package topo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The shipped NATS configuration (deploy/nats) runs here as it is: the
// test copies the files and replaces only the listen addresses, the hub's
// host names and the store directory, which name places on the
// deployment's machines. Every replaced text must occur in the file, so a
// change to the shipped files that moves one of them fails the test
// instead of silently running another configuration. Names and passwords
// come from the environment the files already read them from.

// HubOptions shape a hub cluster run from deploy/nats/nats.conf.
type HubOptions struct {
	// Dir holds nats.conf and the files it includes (accounts.conf);
	// default deploy/nats under the workspace root.
	Dir string
	// Env is added to every server's environment: the passwords
	// accounts.conf reads (FRAMECAST_NATS_*_PASSWORD).
	Env []string
	// User and Password are the test's credentials; they must be allowed
	// $JS.API.INFO (the readiness check).
	User, Password string
}

// hubNodes is the cluster size nats.conf routes: nats-1..nats-3.
const hubNodes = 3

// StartHub starts the three hub servers of nats.conf (JetStream domain
// "hub", a leaf node listener each) and waits until JetStream answers on
// every one. The nodes are named nats-1..nats-3, as in docker-compose.yml.
func (e *Env) StartHub(o HubOptions) *NATS {
	e.T.Helper()
	dir := o.Dir
	if dir == "" {
		dir = shippedDir(e.T)
	}
	ports := e.Ports(4 * hubNodes)
	n := &NATS{env: e}
	if o.User != "" {
		n.auth = []nats.Option{nats.UserInfo(o.User, o.Password)}
	}
	for i := range hubNodes {
		name := fmt.Sprintf("nats-%d", i+1)
		n.Nodes = append(n.Nodes, &NATSNode{
			Name:        name,
			Port:        ports[4*i],
			ClusterPort: ports[4*i+1],
			LeafPort:    ports[4*i+2],
			MonitorPort: ports[4*i+3],
			StoreDir:    filepath.Join(e.Dir, name+"-store"),
			env:         e,
			procEnv:     append([]string{"NATS_SERVER_NAME=" + name}, o.Env...),
		})
	}
	for _, nd := range n.Nodes {
		confDir := filepath.Join(e.Dir, nd.Name+"-conf")
		repl := []string{
			"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", nd.Port),
			"http: 0.0.0.0:8222", fmt.Sprintf("http: 127.0.0.1:%d", nd.MonitorPort),
			"store_dir: /data", fmt.Sprintf("store_dir: %q", nd.StoreDir),
			"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", nd.ClusterPort),
			"listen: 0.0.0.0:7422", fmt.Sprintf("listen: 127.0.0.1:%d", nd.LeafPort),
		}
		for j, other := range n.Nodes {
			repl = append(repl, fmt.Sprintf("nats-route://nats-%d:6222", j+1), fmt.Sprintf("nats-route://127.0.0.1:%d", other.ClusterPort))
		}
		conf, err := copyShipped(dir, confDir, "nats.conf", repl)
		if err != nil {
			e.T.Fatal(err)
		}
		nd.Config = conf
	}
	for _, nd := range n.Nodes {
		nd.Start()
	}
	n.WaitReady()
	return n
}

// LeafURLs are the hub's leaf node listeners with user:pass, for
// LeafOptions.HubURLs.
func (n *NATS) LeafURLs(user, pass string) []string {
	var urls []string
	for _, nd := range n.Nodes {
		urls = append(urls, fmt.Sprintf("nats-leaf://%s:%s@127.0.0.1:%d", user, pass, nd.LeafPort))
	}
	return urls
}

// LeafOptions shape a leaf node run from deploy/nats/leaf.conf: one GPU
// host's NATS server.
type LeafOptions struct {
	// Dir holds leaf.conf; default deploy/nats under the workspace root.
	Dir string
	// Name is the leaf's server name (FRAMECAST_LEAF_NAME).
	Name string
	// HubURLs are the hub's leaf listeners with the leaf user's
	// credentials (FRAMECAST_HUB_LEAF_URLS), e.g. proxies the test cuts.
	HubURLs []string
	// ProducerPassword is the local producer user's password
	// (FRAMECAST_NATS_PRODUCER_PASSWORD).
	ProducerPassword string
}

// StartLeaf starts a leaf node and waits until a JetStream request made
// through it, as the local producer, is answered by the hub: the leaf is
// connected.
func (e *Env) StartLeaf(o LeafOptions) *NATSNode {
	e.T.Helper()
	dir := o.Dir
	if dir == "" {
		dir = shippedDir(e.T)
	}
	nd := &NATSNode{Name: o.Name, Port: e.Ports(1)[0], env: e}
	nd.procEnv = []string{
		"FRAMECAST_LEAF_NAME=" + o.Name,
		"FRAMECAST_NATS_PRODUCER_PASSWORD=" + o.ProducerPassword,
		"FRAMECAST_HUB_LEAF_URLS=[" + strings.Join(o.HubURLs, ", ") + "]",
	}
	conf, err := copyShipped(dir, filepath.Join(e.Dir, o.Name+"-conf"), "leaf.conf", []string{
		"listen: 127.0.0.1:4222", fmt.Sprintf("listen: 127.0.0.1:%d", nd.Port),
	})
	if err != nil {
		e.T.Fatal(err)
	}
	nd.Config = conf
	nd.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := nd.WaitLinked(ctx, "producer", o.ProducerPassword); err != nil {
		e.T.Fatalf("leaf %s: %v", o.Name, err)
	}
	return nd
}

// WaitLinked waits until a JetStream account request sent through the
// leaf node nd as user is answered, which only the hub can do.
func (nd *NATSNode) WaitLinked(ctx context.Context, user, pass string) error {
	return waitJetStream(ctx, nd.URL(), nats.UserInfo(user, pass))
}

// URLWithUser is the node's client URL with user:pass.
func (nd *NATSNode) URLWithUser(user, pass string) string {
	return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, nd.Port)
}

// shippedDir is deploy/nats under the workspace root.
func shippedDir(t interface{ Fatal(...any) }) string {
	root, err := WorkspaceRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy", "nats")
}

// copyShipped copies every .conf file of src into dst (so includes
// resolve) and writes main with the replacements old, new, ... applied;
// each old text must occur in main. It returns the path of main's copy.
func copyShipped(src, dst, main string, repl []string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	files, err := filepath.Glob(filepath.Join(src, "*.conf"))
	if err != nil {
		return "", err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if filepath.Base(f) == main {
			s := string(b)
			for i := 0; i+1 < len(repl); i += 2 {
				if !strings.Contains(s, repl[i]) {
					return "", fmt.Errorf("%s: no %q to set for the test; the shipped file changed shape", f, repl[i])
				}
				s = strings.ReplaceAll(s, repl[i], repl[i+1])
			}
			b = []byte(s)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			return "", err
		}
	}
	path := filepath.Join(dst, main)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("shipped configuration: %w", err)
	}
	return path, nil
}
