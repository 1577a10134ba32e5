package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/contoso-secops/mde-offboard/internal/app"
)

// container is what the test reads of the manifest's worker container.
type container struct {
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string         `yaml:"name"`
		Value     string         `yaml:"value"`
		ValueFrom map[string]any `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	StartupProbe, LivenessProbe, ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"-"`
}

const deploymentFile = "../../deploy/kubernetes/deployment.yaml"

// envFlag is the flag an MDE_OFFBOARD_ variable sets, as ff maps them.
func envFlag(fs *flag.FlagSet, name string) *flag.Flag {
	rest, ok := strings.CutPrefix(name, envPrefix)
	if !ok {
		return nil
	}
	return fs.Lookup(strings.ReplaceAll(strings.ToLower(rest), "_", "-"))
}

// workerFlags is the worker's real flag set.
func workerFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var c cli
	defineFlags(fs, &c)
	return fs
}

// readDeployment reads the worker container of the Deployment, and its
// manifest's text.
func readDeployment(t *testing.T) (container, string) {
	t.Helper()
	data, err := os.ReadFile(deploymentFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []yaml.Node `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want the worker alone", len(d.Spec.Template.Spec.Containers))
	}
	node := &d.Spec.Template.Spec.Containers[0]
	var c container
	var probes struct {
		StartupProbe   any `yaml:"startupProbe"`
		LivenessProbe  any `yaml:"livenessProbe"`
		ReadinessProbe any `yaml:"readinessProbe"`
	}
	if err := node.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := node.Decode(&probes); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[*any]any{
		&probes.StartupProbe: &c.StartupProbe, &probes.LivenessProbe: &c.LivenessProbe, &probes.ReadinessProbe: &c.ReadinessProbe,
	} {
		b, _ := yaml.Marshal(*from)
		if err := yaml.Unmarshal(b, to); err != nil {
			t.Fatal(err)
		}
	}
	return c, string(data)
}

// commentedEnv matches the environment variables the manifest offers in
// comments, to uncomment.
var commentedEnv = regexp.MustCompile(`(?m)^\s*#\s*-?\s*name:\s*(MDE_OFFBOARD_\w+)`)

// TestDeploymentFlags parses the Deployment's container arguments and
// environment with the worker's own flags, as the worker in the pod
// would, and checks its tenants file with them: every variable names a
// flag (ff ignores an MDE_OFFBOARD_ variable that names none, so a
// misspelt one would be dropped without a word), also those offered in
// comments, and every value reads. The probes and the metrics port are
// the worker's.
func TestDeploymentFlags(t *testing.T) {
	c, text := readDeployment(t)
	fs := workerFlags()
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			continue // the Go runtime's; deploy's TestKustomization checks it
		}
		if envFlag(fs, e.Name) == nil {
			t.Errorf("environment variable %s sets no flag of the worker", e.Name)
			continue
		}
		value := e.Value
		if e.ValueFrom != nil {
			value = "mde-offboard-6f7d9c8b5-x7k2p" // a pod's name, as the field reference gives it
		}
		t.Setenv(e.Name, value)
	}
	for _, m := range commentedEnv.FindAllStringSubmatch(text, -1) {
		if envFlag(fs, m[1]) == nil {
			t.Errorf("the commented environment variable %s sets no flag of the worker", m[1])
		}
	}
	args := localConfig(t, c)
	var stdout, stderr bytes.Buffer
	if code := run(append(args, "--check-config"), &stdout, &stderr); code != 0 {
		t.Fatalf("worker %v with the manifest's environment: exit code %d: %s", args, code, stderr.String())
	}
	cl, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkPorts(t, c, cl.o.Listen)
}

// localConfig returns the container's arguments with the tenants file
// the ConfigMap mounts replaced by deploy/worker.yaml, which it is
// generated from, its credential files in a temporary directory
// (exampleConfig).
func localConfig(t *testing.T, c container) []string {
	t.Helper()
	var mount string
	for _, m := range c.VolumeMounts {
		if m.Name == "config" {
			mount = m.MountPath
		}
	}
	example := exampleConfig(t)
	args := make([]string, 0, len(c.Args))
	found := false
	for _, a := range c.Args {
		if p, ok := strings.CutPrefix(a, "--config="); ok {
			if p != path.Join(mount, "worker.yaml") {
				t.Errorf("--config=%s is not the ConfigMap's worker.yaml under %s", p, mount)
			}
			a, found = "--config="+example, true
		}
		args = append(args, a)
	}
	if !found {
		t.Error("the container's arguments name no --config")
	}
	return args
}

// checkPorts: the metrics port is the one the worker listens on, and the
// probes ask it for the endpoints it serves.
func checkPorts(t *testing.T, c container, listen string) {
	t.Helper()
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	var metrics string
	for _, p := range c.Ports {
		if strconv.Itoa(p.ContainerPort) == port {
			metrics = p.Name
		}
	}
	if metrics == "" {
		t.Fatalf("no container port is the worker's --listen %s", listen)
	}
	for name, port := range map[string]string{
		"startupProbe": c.StartupProbe.HTTPGet.Port, "livenessProbe": c.LivenessProbe.HTTPGet.Port, "readinessProbe": c.ReadinessProbe.HTTPGet.Port,
	} {
		if port != metrics {
			t.Errorf("%s asks port %q, not the worker's %s", name, port, metrics)
		}
	}
	// TestRunServesAndStopsOnSIGTERM asks a running worker for the paths.
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("readiness is /readyz (NATS and the streams), liveness /healthz (the process)")
	}
}

// probePaths are the paths the manifest's probes ask for.
func probePaths(t *testing.T) []string {
	c, _ := readDeployment(t)
	return []string{c.StartupProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path}
}

// TestDockerfile: the image's entry point is the worker the Dockerfile
// builds, its default arguments parse and name the tenants file the
// manifest mounts, and it exposes the worker's metrics port.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	instruction := func(name string) []string {
		m := regexp.MustCompile(`(?m)^` + name + ` (\[.*\])\s*$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s [...] in the Dockerfile", name)
		}
		var v []string
		if err := json.Unmarshal([]byte(m[1]), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	if ep := instruction("ENTRYPOINT"); len(ep) != 1 || ep[0] != "/usr/local/bin/worker" {
		t.Errorf("ENTRYPOINT %v, want [/usr/local/bin/worker]", ep)
	}
	if !regexp.MustCompile(`go build [^\n]*-o /out/ (?:\\\n|[^\n])*\./cmd/worker\b`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^COPY --from=build /out/worker .*/usr/local/bin/$`).MatchString(text) {
		t.Error("the Dockerfile does not build ./cmd/worker into /usr/local/bin/worker")
	}
	c, _ := readDeployment(t)
	cmd := instruction("CMD")
	if strings.Join(cmd, " ") != strings.Join(c.Args, " ") {
		t.Errorf("the image's CMD %v differs from the manifest's args %v", cmd, c.Args)
	}
	if code := run(append(localConfig(t, container{Args: cmd, VolumeMounts: c.VolumeMounts}), "--check-config"), io.Discard, io.Discard); code != 0 {
		t.Errorf("worker %v --check-config: exit code %d", cmd, code)
	}
	// docker run IMAGE --check-config replaces CMD: the image's
	// environment must still name the file CMD names.
	for _, m := range regexp.MustCompile(`(?m)^ENV (\w+)=(\S+)\s*$`).FindAllStringSubmatch(text, -1) {
		t.Setenv(m[1], m[2])
	}
	cl, err := parseFlags([]string{"--check-config"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimPrefix(cmd[0], "--config="); cl.o.ConfigPath != want {
		t.Errorf("docker run IMAGE --check-config reads %q, want CMD's %s", cl.o.ConfigPath, want)
	}
	_, port, _ := net.SplitHostPort(app.DefaultListen)
	if !regexp.MustCompile(`(?m)^EXPOSE ` + port + `$`).MatchString(text) {
		t.Errorf("the Dockerfile does not EXPOSE the worker's port %s", port)
	}
}

// TestDockerBuildContext reads .dockerignore as docker build does (the
// last matching pattern wins, "!" takes a path back, a pattern matching
// a directory takes everything under it) and checks that the build
// context holds the Go sources the image is built from and none of the
// files an operator leaves in the repository's root: the README's
// step-by-step run writes the simulator's secret there, and a tenant's
// client-secret or certificate.pem made for deploy/README's kubectl
// create secret sits there too. COPY . . would put them in the build
// stage, which the builder caches and may push with its cache.
func TestDockerBuildContext(t *testing.T) {
	data, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	type pattern struct {
		glob   string
		negate bool
	}
	var patterns []pattern
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := pattern{}
		p.glob, p.negate = strings.CutPrefix(line, "!")
		p.glob = strings.TrimPrefix(path.Clean(strings.TrimSpace(p.glob)), "/")
		if strings.Contains(p.glob, "**") {
			t.Fatalf(".dockerignore: %q: ** is not read by this test", line)
		}
		patterns = append(patterns, p)
	}
	inContext := func(file string) bool {
		in := true
		for _, p := range patterns {
			for dir := file; dir != "."; dir = path.Dir(dir) {
				if ok, err := path.Match(p.glob, dir); err != nil {
					t.Fatalf(".dockerignore: %q: %v", p.glob, err)
				} else if ok {
					in = p.negate
					break
				}
			}
		}
		return in
	}

	out, err := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"../../cmd/worker", "../../cmd/offboardctl").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	for line := range strings.Lines(string(out)) {
		rel, err := filepath.Rel(root, strings.TrimSpace(line))
		if err != nil {
			t.Fatal(err)
		}
		need = append(need, filepath.ToSlash(rel))
	}
	if len(need) < 10 {
		t.Fatalf("go list named %d files: %q", len(need), need)
	}
	for _, f := range need {
		if !inContext(f) {
			t.Errorf("%s is left out of the build context, and the image needs it", f)
		}
	}
	for _, f := range []string{
		"secret", "sim-ca.pem", "worker.yaml", "one.csv", "one-report.csv",
		"client-secret", "certificate.pem", "data/jetstream/x", ".git/config",
	} {
		if inContext(f) {
			t.Errorf("%s is sent in the build context", f)
		}
	}
}

// TestDockerRunExample: the docker run the Dockerfile shows mounts the
// tenants file at the path the image's CMD reads and, under its other
// mounts, every credential file that tenants file names. Without them the
// worker exits 2 at start (clientSecretFile: the file it names could not
// be read).
func TestDockerRunExample(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var cmd strings.Builder
	in := false
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if strings.HasPrefix(line, "docker run ") {
			in = true
		}
		if !in {
			continue
		}
		rest, more := strings.CutSuffix(line, `\`)
		cmd.WriteString(rest + " ")
		if !more {
			break
		}
	}
	if cmd.Len() == 0 {
		t.Fatal("no docker run in the Dockerfile's comments")
	}
	mounts := map[string]string{} // in the container: on the host
	for _, m := range regexp.MustCompile(`-v "?([^" ]+)"?`).FindAllStringSubmatch(cmd.String(), -1) {
		parts := strings.Split(m[1], ":")
		if len(parts) < 2 {
			t.Fatalf("-v %s: no container path", m[1])
		}
		mounts[parts[1]] = strings.Replace(parts[0], "$PWD", "../..", 1)
	}
	host, ok := mounts["/etc/mde-offboard/worker.yaml"]
	if !ok {
		t.Fatalf("%s: the tenants file is not mounted at /etc/mde-offboard/worker.yaml", cmd.String())
	}
	text, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tenants []map[string]any `yaml:"tenants"`
	}
	if err := yaml.Unmarshal(text, &f); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range f.Tenants {
		for _, key := range []string{"clientSecretFile", "certificateFile", "certificatePasswordFile", "caFile", "tokenFile"} {
			file, _ := tenant[key].(string)
			if file == "" {
				continue
			}
			mounted := false
			for dir := range mounts {
				if strings.HasPrefix(file, strings.TrimSuffix(dir, "/")+"/") {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("tenant %v: %s %s is under none of the example's mounts %v", tenant["name"], key, file, slices.Collect(maps.Keys(mounts)))
			}
		}
	}
}

// TestCheckConfigInThePod: deploy/README.md and the runbooks have an
// operator check the tenants file with worker --check-config in the pod
// (kubectl exec deploy/mde-offboard -- worker --check-config), where the
// secrets are mounted. Such a worker gets the container's environment but
// not its args: it must still read the tenants file the ConfigMap mounts.
// (It read worker.yaml in the working directory, which is not there, and
// exited 2 as if the tenants file were missing.)
func TestCheckConfigInThePod(t *testing.T) {
	c, _ := readDeployment(t)
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			t.Setenv(e.Name, e.Value)
		}
	}
	var mount string
	for _, m := range c.VolumeMounts {
		if m.Name == "config" {
			mount = m.MountPath
		}
	}
	cl, err := parseFlags([]string{"--check-config"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := path.Join(mount, "worker.yaml"); cl.o.ConfigPath != want {
		t.Errorf("worker --check-config in the pod reads %q, want the ConfigMap's %s", cl.o.ConfigPath, want)
	}
}
