package topo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions shape a NATS topology.
type NATSOptions struct {
	// Servers is 1 (standalone) or more (a cluster on loopback); default 1.
	Servers int
	// Authorization, when set, is a NATS config block placed verbatim in
	// every server's config (e.g. `authorization { users = [...] }`).
	Authorization string
	// User and Password are the test's own credentials when Authorization
	// is set; they must at least be allowed $JS.API.INFO (the readiness
	// check).
	User, Password string
	// Env is added to every server's environment (NAME=value), e.g. the
	// passwords an included accounts file reads.
	Env []string
}

// NATSNode is one nats-server process; it keeps its name, ports and store
// across restarts.
type NATSNode struct {
	Name        string
	Port        int
	ClusterPort int
	// LeafPort and MonitorPort are the leaf node listener and the HTTP
	// monitoring port of a hub server (StartHub); 0 otherwise.
	LeafPort    int
	MonitorPort int
	StoreDir    string
	Config      string // path of the server's config file

	env     *Env
	procEnv []string
	proc    *Proc
}

// NATS is a standalone server or a cluster.
type NATS struct {
	Nodes []*NATSNode
	env   *Env
	auth  []nats.Option // the test's credentials
}

// StartNATS starts the servers and waits until JetStream answers on every
// one of them.
func (e *Env) StartNATS(o NATSOptions) *NATS {
	e.T.Helper()
	if o.Servers == 0 {
		o.Servers = 1
	}
	ports := e.Ports(2 * o.Servers)
	n := &NATS{env: e}
	if o.User != "" {
		n.auth = []nats.Option{nats.UserInfo(o.User, o.Password)}
	}
	for i := range o.Servers {
		n.Nodes = append(n.Nodes, &NATSNode{
			Name:        fmt.Sprintf("n%d", i),
			Port:        ports[2*i],
			ClusterPort: ports[2*i+1],
			StoreDir:    filepath.Join(e.Dir, fmt.Sprintf("n%d-store", i)),
			env:         e,
			procEnv:     o.Env,
		})
	}
	for _, nd := range n.Nodes {
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nmax_payload: 8MB\n", nd.Name, nd.Port)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}\n", nd.StoreDir)
		if len(n.Nodes) > 1 {
			var routes []string
			for _, other := range n.Nodes {
				if other != nd {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", other.ClusterPort))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: fc\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", nd.ClusterPort, strings.Join(routes, ", "))
		}
		b.WriteString(o.Authorization)
		nd.Config = filepath.Join(e.Dir, nd.Name+".conf")
		if err := os.WriteFile(nd.Config, []byte(b.String()), 0o644); err != nil {
			e.T.Fatal(err)
		}
	}
	for _, nd := range n.Nodes {
		nd.Start()
	}
	n.WaitReady()
	return n
}

// URL is the comma-separated client URL list of every node, for
// --nats-url.
func (n *NATS) URL() string {
	var urls []string
	for _, nd := range n.Nodes {
		urls = append(urls, nd.URL())
	}
	return strings.Join(urls, ",")
}

// URLWithUser is URL with user:pass in every address.
func (n *NATS) URLWithUser(user, pass string) string {
	var urls []string
	for _, nd := range n.Nodes {
		urls = append(urls, fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, nd.Port))
	}
	return strings.Join(urls, ",")
}

// URL is the node's client URL.
func (nd *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", nd.Port) }

// Start (re)starts the node's process with its config and store.
func (nd *NATSNode) Start() {
	nd.env.T.Helper()
	nd.proc = nd.env.Start("nats-"+nd.Name, nd.env.Bins.NATS, nd.procEnv, "-c", nd.Config)
}

// Kill SIGKILLs the node and waits for it to exit.
func (nd *NATSNode) Kill() { nd.proc.Kill() }

// Stop asks the node to shut down with SIGTERM and waits for it to exit
// (SIGKILL after 10s).
func (nd *NATSNode) Stop() {
	if err := nd.proc.Signal(syscall.SIGTERM); err != nil {
		return
	}
	if err := nd.proc.Wait(10 * time.Second); errors.Is(err, ErrStillRunning) {
		nd.proc.Kill()
	}
}

// Proc is the node's current process.
func (nd *NATSNode) Proc() *Proc { return nd.proc }

// Node returns the node named name, or nil.
func (n *NATS) Node(name string) *NATSNode {
	for _, nd := range n.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// Connect opens a test-side connection to every node; it is closed at
// cleanup. opts may add credentials.
func (n *NATS) Connect(opts ...nats.Option) *nats.Conn {
	n.env.T.Helper()
	opts = append(append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, n.auth...), opts...)
	nc, err := nats.Connect(n.URL(), opts...)
	if err != nil {
		n.env.T.Fatalf("connect %s: %v", n.URL(), err)
	}
	n.env.T.Cleanup(nc.Close)
	return nc
}

// WaitReady waits up to 60s until every running node accepts a
// connection and answers a JetStream account request.
func (n *NATS) WaitReady() {
	n.env.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, nd := range n.Nodes {
		if nd.proc == nil || nd.proc.Exited() {
			continue
		}
		if err := waitJetStream(ctx, nd.URL(), n.auth...); err != nil {
			n.env.T.Fatalf("nats %s not ready: %v", nd.Name, err)
		}
	}
}

func waitJetStream(ctx context.Context, url string, opts ...nats.Option) error {
	var last error
	for {
		last = func() error {
			nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(time.Second)}, opts...)...)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(actx)
			return err
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StreamLeader waits until stream has a leader and returns its node.
func (n *NATS) StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (*NATSNode, error) {
	for {
		// Each request has its own deadline: one sent just before the
		// connection moved to another server gets no reply.
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(rctx, stream)
		cancel()
		if err == nil {
			info := s.CachedInfo()
			if info.Cluster != nil && info.Cluster.Leader != "" {
				if nd := n.Node(info.Cluster.Leader); nd != nil {
					return nd, nil
				}
				return nil, fmt.Errorf("stream %s leader %q is not a node of this topology", stream, info.Cluster.Leader)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stream %s leader: %w (last error: %v)", stream, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
