package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// gatewayBin is one gateway under test.
type gatewayBin struct {
	// Label names it in the tables: "BASE 2831485", "HEAD working tree".
	Label string
	Path  string
	// Args are added to the gateway's command line (-head-flags).
	Args []string
}

// binaries are the programs of one run. Gateways are BASE then HEAD.
type binaries struct {
	NATS, Producer string
	Gateways       [2]gatewayBin
}

const (
	gatewayPkg  = "./services/gateway/cmd/gateway"
	producerPkg = "./services/producer/cmd/producer"
	// nats-server is a requirement of the integration module, so the
	// workspace builds it at the version the services are tested against.
	natsServerPkg = "github.com/nats-io/nats-server/v2"
)

// build builds what cfg does not name into dir, logging each step to log.
// Commits are exported with git archive into directories under dir, which
// are removed once built.
func build(ctx context.Context, cfg Config, dir string, log io.Writer) (binaries, error) {
	root, err := gitOutput(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return binaries{}, err
	}
	b := binaries{NATS: cfg.NATSServer, Producer: cfg.Producer}
	b.Gateways[0] = gatewayBin{Label: "BASE", Path: cfg.BaseGateway}
	b.Gateways[1] = gatewayBin{Label: "HEAD", Path: cfg.HeadGateway, Args: cfg.HeadFlags}

	if b.NATS == "" || b.Producer == "" || b.Gateways[0].Path == "" {
		src, short, err := export(ctx, root, cfg.Base, filepath.Join(dir, "base-src"))
		if err != nil {
			return binaries{}, err
		}
		b.Gateways[0].Label += " " + short
		steps := []struct {
			path *string
			out  string
			pkg  string
		}{
			{&b.NATS, "nats-server", natsServerPkg},
			{&b.Producer, "producer", producerPkg},
			{&b.Gateways[0].Path, "gateway-base", gatewayPkg},
		}
		for _, s := range steps {
			if *s.path != "" {
				continue
			}
			*s.path = filepath.Join(dir, s.out)
			fmt.Fprintf(log, "building %s from %s\n", s.out, short)
			if err := goBuild(ctx, src, *s.path, s.pkg); err != nil {
				return binaries{}, err
			}
		}
		if err := os.RemoveAll(src); err != nil {
			return binaries{}, err
		}
	} else {
		b.Gateways[0].Label += " (given)"
	}

	switch {
	case b.Gateways[1].Path != "":
		b.Gateways[1].Label += " (given)"
	case cfg.Head == "":
		b.Gateways[1].Label += " working tree"
		b.Gateways[1].Path = filepath.Join(dir, "gateway-head")
		fmt.Fprintln(log, "building gateway from the working tree")
		if err := goBuild(ctx, root, b.Gateways[1].Path, gatewayPkg); err != nil {
			return binaries{}, err
		}
	default:
		src, short, err := export(ctx, root, cfg.Head, filepath.Join(dir, "head-src"))
		if err != nil {
			return binaries{}, err
		}
		b.Gateways[1].Label += " " + short
		b.Gateways[1].Path = filepath.Join(dir, "gateway-head")
		fmt.Fprintf(log, "building gateway from %s\n", short)
		if err := goBuild(ctx, src, b.Gateways[1].Path, gatewayPkg); err != nil {
			return binaries{}, err
		}
		if err := os.RemoveAll(src); err != nil {
			return binaries{}, err
		}
	}
	if len(b.Gateways[1].Args) > 0 {
		b.Gateways[1].Label += " " + strings.Join(b.Gateways[1].Args, " ")
	}
	return b, nil
}

// export writes the tree of commit rev of the repository at root into
// dst (git archive | tar -x) and returns dst and the commit's short hash.
func export(ctx context.Context, root, rev, dst string) (string, string, error) {
	short, err := gitOutput(ctx, root, "rev-parse", "--short", "--verify", rev+"^{commit}")
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", "", err
	}
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", short)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dst)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", "", err
	}
	untar.Stdin = pipe
	var archiveErr, untarErr strings.Builder
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return "", "", fmt.Errorf("tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", "", fmt.Errorf("git archive %s: %w: %s", short, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", "", fmt.Errorf("tar -x of %s: %w: %s", short, err, untarErr.String())
	}
	return dst, short, nil
}

// goBuild builds pkg in the workspace at dir into out, static like the
// release binaries.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	// GOWORK empty: the go.work of dir, not one named by the caller's
	// environment.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false -tags=nodynamic", "GOWORK=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, b)
	}
	return nil
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr))
	}
	return strings.TrimSpace(string(out)), nil
}
