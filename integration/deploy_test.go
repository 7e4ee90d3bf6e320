package integration_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/framecast/framecast/integration/topo"
	"github.com/framecast/framecast/shared/envcheck"
)

// TestDeployedSettingsExist checks every FRAMECAST_* variable that
// docker-compose.yml and the Kubernetes manifests give a gateway, a
// producer or the stream ensure step (framecast stream ensure) against
// the flags of the binary itself (its -h listing): a
// service ignores a variable that names no flag, so a misspelled one in
// a manifest would silently leave a default (a warning in its log is all).
// Variables given to the ComfyUI container are checked against those the
// node reads (comfyui/publish.py).
func TestDeployedSettingsExist(t *testing.T) {
	root, err := topo.WorkspaceRoot()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]map[string]bool{
		"framecast/gateway":   flagVars(t, bins.Gateway),
		"framecast/producer":  flagVars(t, bins.Producer),
		"framecast/framecast": flagVars(t, bins.Framecast, "stream", "ensure"),
		"comfyui":             nodeVars(t, filepath.Join(root, "comfyui", "publish.py")),
	}
	var found []string
	check := func(where, image string, vars []string) {
		kind := imageKind(image)
		if kind == "" {
			return
		}
		found = append(found, where)
		for _, v := range vars {
			if strings.HasPrefix(v, "FRAMECAST_") && !known[kind][v] {
				t.Errorf("%s (%s) sets %s, which is no setting of %s", where, image, v, kind)
			}
		}
	}
	for _, c := range composeContainers(t, filepath.Join(root, "docker-compose.yml")) {
		check("docker-compose.yml service "+c.name, c.image, c.env)
	}
	manifests, err := filepath.Glob(filepath.Join(root, "deploy", "k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range manifests {
		for _, c := range k8sContainers(t, m) {
			check(filepath.Base(m)+" container "+c.name, c.image, c.env)
		}
	}
	sort.Strings(found)
	want := []string{
		"comfyui-producer.yaml container comfyui",
		"comfyui-producer.yaml container framecast-producer",
		"docker-compose.yml service gateway-1",
		"docker-compose.yml service gateway-2",
		"docker-compose.yml service gpu-producer",
		"docker-compose.yml service producer",
		"docker-compose.yml service stream-ensure",
		"gateway.yaml container gateway",
		"stream-ensure.yaml container stream-ensure",
	}
	if strings.Join(found, "\n") != strings.Join(want, "\n") {
		t.Errorf("containers checked:\n%s\nwant:\n%s", strings.Join(found, "\n"), strings.Join(want, "\n"))
	}
}

// imageKind names the program an image runs, or "" for one not checked.
func imageKind(image string) string {
	name, _, _ := strings.Cut(image, ":")
	switch {
	case name == "framecast/gateway", name == "framecast/producer", name == "framecast/framecast":
		return name
	case strings.HasPrefix(name, "comfyui"):
		return "comfyui"
	}
	return ""
}

// flagVars runs bin with args and -h and returns the variables its flags
// are read from.
func flagVars(t *testing.T, bin string, args ...string) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, append(args, "-h")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	var exit *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s -h: %v", bin, err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
		vars[envcheck.EnvName("FRAMECAST", m[1])] = true
	}
	if len(vars) < 5 || !vars["FRAMECAST_NATS_URL"] {
		t.Fatalf("%s -h listed %d flags (%v); want its flags, nats-url among them:\n%s", bin, len(vars), vars, out.String())
	}
	return vars
}

// nodeVars returns the FRAMECAST_* variables listed in the ComfyUI node's
// module docstring, one a line, each line starting with "- " and the name
// in reStructuredText literal quotes.
func nodeVars(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^- ``(FRAMECAST_[A-Z0-9_]+)``").FindAllSubmatch(b, -1) {
		vars[string(m[1])] = true
	}
	if !vars["FRAMECAST_PRODUCER_URL"] {
		t.Fatalf("%s: found %v; want the node's variables, FRAMECAST_PRODUCER_URL among them", path, vars)
	}
	return vars
}

type container struct {
	name, image string
	env         []string
}

// composeContainers returns the services of a compose file with their
// environment's names (YAML merge keys resolved).
func composeContainers(t *testing.T, path string) []container {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image       string `yaml:"image"`
			Environment any    `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var cs []container
	for name, s := range f.Services {
		c := container{name: name, image: s.Image}
		switch env := s.Environment.(type) {
		case map[string]any:
			for k := range env {
				c.env = append(c.env, k)
			}
		case []any:
			for _, kv := range env {
				k, _, _ := strings.Cut(kv.(string), "=")
				c.env = append(c.env, k)
			}
		case nil:
		default:
			t.Fatalf("%s: service %s: environment of type %T", path, name, env)
		}
		cs = append(cs, c)
	}
	return cs
}

// k8sContainers returns the containers and init containers of the pod
// templates in a multi-document manifest, with their env names.
func k8sContainers(t *testing.T, path string) []container {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type ctr struct {
		Name  string `yaml:"name"`
		Image string `yaml:"image"`
		Env   []struct {
			Name string `yaml:"name"`
		} `yaml:"env"`
	}
	var cs []container
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers     []ctr `yaml:"containers"`
						InitContainers []ctr `yaml:"initContainers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		pod := doc.Spec.Template.Spec
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			var env []string
			for _, e := range c.Env {
				env = append(env, e.Name)
			}
			cs = append(cs, container{name: c.Name, image: c.Image, env: env})
		}
	}
	return cs
}

// TestMisspelledSettingWarned starts the gateway and the producer with a
// misspelled FRAMECAST_* variable (and NATS unreachable, which neither
// needs to start): each logs that it ignores it and names the setting
// meant.
func TestMisspelledSettingWarned(t *testing.T) {
	for _, tt := range []struct {
		name, bin, env, want string
		args                 []string
	}{
		{"gateway", bins.Gateway, "FRAMECAST_STREAM_REPLICA=3", "FRAMECAST_STREAM_REPLICAS", []string{"--allow-anonymous"}},
		{"producer", bins.Producer, "FRAMECAST_MAX_BODY_BYTE=10", "FRAMECAST_MAX_BODY_BYTES", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			port, err := topo.FreePorts(1)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{fmt.Sprintf("--listen=127.0.0.1:%d", port[0]), "--nats-url=nats://127.0.0.1:1"}, tt.args...)
			cmd := exec.Command(tt.bin, args...)
			// Only tt.env of the FRAMECAST_* variables: others in the
			// test's environment (FRAMECAST_ACCOUNTING) would be warned
			// about first.
			cmd.Env = append(topo.Environ(), tt.env)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			found := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					if strings.Contains(sc.Text(), "environment variable ignored") {
						found <- sc.Text()
						return
					}
				}
				close(found)
			}()
			select {
			case line, ok := <-found:
				name, _, _ := strings.Cut(tt.env, "=")
				if !ok || !strings.Contains(line, name) || !strings.Contains(line, tt.want) {
					t.Errorf("warning %q; want one naming %s and suggesting %s", line, name, tt.want)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("no warning about %s within 20s", tt.env)
			}
		})
	}
}
