// Package natsembed starts NATS servers with JetStream inside the process:
// the development stack's broker and the tests' real NATS (one server or a
// cluster on loopback).
package natsembed

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned when a server does not accept connections in time.
var ErrNotReady = errors.New("nats server not ready")

// Config describes one embedded server. The zero value is a standalone
// JetStream server on 127.0.0.1 at a random port with storage in a new
// temporary directory.
type Config struct {
	Name     string // server name; default: generated
	Host     string // default 127.0.0.1
	Port     int    // 0 picks a free port
	StoreDir string // JetStream storage; default: a new temp dir
	// MaxPayload bounds a message; 0 is 8 MiB.
	MaxPayload int32
	// Cluster, when set, joins the server to a cluster.
	Cluster *Cluster
	// Logs enables the server's own log output on stderr.
	Logs bool
}

// Cluster is the clustering part of Config.
type Cluster struct {
	Name   string
	Port   int      // route port; 0 picks a free one
	Routes []string // nats-route://host:port of the other servers
}

// Start runs a server and waits until it accepts connections.
func Start(c Config) (*server.Server, error) {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = server.RANDOM_PORT
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 8 << 20
	}
	if c.StoreDir == "" {
		dir, err := os.MkdirTemp("", "framecast-nats-*")
		if err != nil {
			return nil, err
		}
		c.StoreDir = dir
	}
	opts := &server.Options{
		ServerName:         c.Name,
		Host:               c.Host,
		Port:               c.Port,
		JetStream:          true,
		StoreDir:           c.StoreDir,
		MaxPayload:         c.MaxPayload,
		NoSigs:             true,
		NoLog:              !c.Logs,
		JetStreamMaxMemory: 2 << 30, // a memory OUTPUTS stream and its bucket at their defaults
		JetStreamMaxStore:  8 << 30,
	}
	if c.Cluster != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Cluster.Name, Host: c.Host, Port: c.Cluster.Port}
		if c.Cluster.Port == 0 {
			opts.Cluster.Port = server.RANDOM_PORT
		}
		for _, r := range c.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new nats server: %w", err)
	}
	if c.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("%w: %s:%d after 10s", ErrNotReady, c.Host, c.Port)
	}
	return s, nil
}
