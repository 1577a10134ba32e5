package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

func freePort(t *testing.T) string {
	t.Helper()
	return natstest.FreeAddr(t)
}

// TestRunServesAndStopsOnSIGTERM runs the command as an operator would:
// flags and environment, a tenants file with a CA file, the embedded NATS
// server; one request goes through; SIGTERM stops it cleanly.
func TestRunServesAndStopsOnSIGTERM(t *testing.T) {
	sim := mdesim.New(mdesim.Options{})
	base := sim.StartTLS()
	defer sim.Close()
	const tenantID, clientID = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
	sim.AddTenant(mdesim.Tenant{TenantID: tenantID, ClientID: clientID, ClientSecret: "cmd-test-secret"})
	machine := mdesim.Machine{ID: mdesim.NewMachineID(), ComputerDNSName: "pc-1.contoso.local", OSPlatform: "Windows11"}
	sim.AddMachine(tenantID, machine)

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("secret", "cmd-test-secret\n")
	ca := write("ca.pem", string(sim.CertPEM()))
	cfg := write("worker.yaml", fmt.Sprintf(`tenants:
  - name: contoso
    tenantId: %s
    clientId: %s
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    caFile: %s
`, tenantID, clientID, secret, base, base, ca))
	httpAddr, natsAddr := freePort(t), freePort(t)
	t.Setenv("MDE_OFFBOARD_LOG_LEVEL", "warn") // environment, as an operator would set it
	t.Setenv("LOG_FORMAT", "console")

	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"--config", cfg, "--data-dir", filepath.Join(dir, "nats"),
			"--embedded-listen", natsAddr, "--listen", httpAddr, "--shutdown-timeout", "10s"}, io.Discard, os.Stderr)
	}()
	waitReady(t, httpAddr, exit)
	// The Deployment's probes find what they ask for.
	for _, p := range probePaths(t) {
		resp, err := http.Get("http://" + httpAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the manifest's probe %s: %s", p, resp.Status)
		}
	}

	data, err := firstResult(t, natsAddr, "cmd-1", machine.ID, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Outcome string }
	if err := json.Unmarshal(data, &res); err != nil || res.Outcome != "created" {
		t.Fatalf("result %s, want created", data)
	}

	if code := sigterm(t, exit, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

// firstResult publishes a request of tenant contoso for machineID to the
// worker's NATS server at natsAddr and returns the first result stored,
// waiting up to within for it.
func firstResult(t *testing.T, natsAddr, requestID, machineID string, within time.Duration) ([]byte, error) {
	t.Helper()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{"requestId": requestID, "machineId": machineID})
	if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso", body); err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(t.Context(), "MDE_OFFBOARD_RESULTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(within))
	if err != nil {
		return nil, fmt.Errorf("no result: %w", err)
	}
	return msg.Data(), nil
}

// TestRunRejectsBadConfiguration: a bad tenants file or flag exits 2 with
// one line on stderr, in the log format chosen, and no stack trace.
func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(cfg, []byte("tenants:\n  - name: Bad Name\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, fmt.Appendf(nil, "tenants:\n  - name: contoso\n    tenantId: 11111111-2222-3333-4444-555555555555\n"+
		"    clientId: 66666666-7777-8888-9999-000000000000\n    clientSecretFile: %s\n", secret), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"replica id", []string{"--config", good, "--replica-id", "pod/1", "--listen", "127.0.0.1:0"}, "--replica-id"},
		{"tenants file, json", []string{"--config", cfg, "--log-level", "error"}, "tenant 1: name must match"},
		{"tenants file, console", []string{"--config", cfg, "--log-format", "console"}, "tenant 1: name must match"},
		{"missing tenants file", []string{"--config", filepath.Join(dir, "absent.yaml")}, "absent.yaml"},
		{"log format", []string{"--log-format", "xml"}, "--log-format: want json or console"},
		{"max requests", []string{"--config", good, "--max-requests", "-1"}, "--max-requests -1"},
		{"flag value", []string{"--max-requests", "x"}, "--max-requests: the value given does not read as a whole number"},
		{"unknown flag", []string{"--max-request", "5"}, "flag provided but not defined: -max-request"},
		{"call timeout", []string{"--config", good, "--call-timeout", "1h"}, "--call-timeout 1h0m0s: at most 40m0s"},
		// 1.5 times it is past the longest duration: the lease wrapped
		// round to a negative one, which passed the check.
		{"call timeout whose lease overflows", []string{"--config", good, "--check-config", "--call-timeout", "1000000h",
			"--quota-history", "2562047h47m16.854775807s"}, "--call-timeout 1000000h0m0s: at most 40m0s"},
		{"stray argument", []string{"other.yaml", "--config", good, "--check-config"}, `unexpected argument "other.yaml"`},
		{"negative ack wait", []string{"--config", good, "--ack-wait", "-1s"}, "--ack-wait -1s: want a positive duration"},
		// The request's keep-alive ticks every third of the ack wait: 1ns
		// made it tick without a pause for every request waiting.
		{"ack wait of a nanosecond", []string{"--config", good, "--check-config", "--ack-wait", "1ns"}, "--ack-wait 1ns: want at least 1s"},
		{"call timeout of a nanosecond", []string{"--config", good, "--check-config", "--call-timeout", "1ns"}, "--call-timeout 1ns: want at least 100ms"},
		{"negative shutdown timeout", []string{"--config", good, "--shutdown-timeout", "-1s"}, "--shutdown-timeout -1s"},
		{"no duplicate window", []string{"--config", good, "--duplicate-window", "0s"}, "--duplicate-window 0s"},
		{"no ledger ttl", []string{"--config", good, "--ledger-ttl", "0s"}, "--ledger-ttl 0s"},
		{"negative quota margin", []string{"--config", good, "--quota-margin", "-1s"}, "--quota-margin -1s"},
		{"negative results age", []string{"--config", good, "--results-max-age", "-1h"}, "--results-max-age -1h0m0s"},
		// Stream settings NATS refuses: refused before anything starts,
		// and by --check-config, not by the server once it is up.
		{"results kept less than the duplicate window", []string{"--config", good, "--check-config", "--results-max-age", "1h"},
			"--results-max-age 1h0m0s: want 0 (kept for ever) or at least --duplicate-window 24h0m0s"},
		// An id the ledger forgot within the window is worked on again,
		// and its new result (an action made) dropped as a repeat.
		{"ledger forgets ids within the duplicate window", []string{"--config", good, "--check-config", "--ledger-ttl", "1h"},
			"--ledger-ttl 1h0m0s: want at least --duplicate-window 24h0m0s"},
		{"duplicate window under NATS's least", []string{"--config", good, "--check-config", "--duplicate-window", "10ms"}, "--duplicate-window 10ms: want at least 100ms"},
		// A request whose result was stored and whose ack was lost
		// comes back after the ack wait, and its result, sent again
		// under its message id, must still be dropped as a repeat.
		{"duplicate window under the ack wait", []string{"--config", good, "--check-config", "--duplicate-window", "30s"},
			"--duplicate-window 30s: want at least --ack-wait 1m0s"},
		{"budget history under its duplicate window", []string{"--config", good, "--check-config", "--budget-history", "30s"}, "--budget-history 30s: want at least 1m0s"},
		{"no stream replicas", []string{"--config", good, "--stream-replicas", "0"}, "--stream-replicas 0: want 1 to 5"},
		{"subject prefix", []string{"--config", good, "--subject-prefix", "a..b"}, `--subject-prefix: an empty token`},
		{"URL not parsed", []string{"--config", good, "--nats-url", "nats://alice:s3cret@host:bad"}, "NATS URL nats://host:bad is not a URL"},
		{"port out of range", []string{"--config", good, "--check-config", "--nats-url", "nats://alice:s3cret@host:99999"}, "NATS URL nats://host:99999: want a port from 1 to 65535"},
		// -1 picks a free port for the embedded server alone: the
		// listener refused it once NATS was up, and --check-config
		// passed it.
		{"listen on port -1, checked", []string{"--config", good, "--check-config", "--listen", ":-1"}, "--listen: want host:port"},
		{"listen on port -1", []string{"--config", good, "--listen", ":-1"}, "--listen: want host:port"},
		{"inbox under the subjects", []string{"--config", good, "--nats-inbox-prefix", "mde.offboard.x"}, "is under mde.offboard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tc.args, io.Discard, &stderr); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			out := stderr.String()
			if !strings.Contains(out, tc.want) {
				t.Errorf("error does not mention %q:\n%s", tc.want, out)
			}
			if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
				t.Errorf("error is not one line:\n%s", out)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("error shows the URL's password:\n%s", out)
			}
			if strings.Contains(out, "stacktrace") || strings.Contains(out, "goroutine") {
				t.Errorf("error carries a stack trace:\n%s", out)
			}
		})
	}
}

// TestVersion prints the version and exits 0.
func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"--version"}, &stdout, io.Discard); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.HasPrefix(stdout.String(), "worker ") {
		t.Errorf("--version printed %q", stdout.String())
	}
}

// TestCheckConfig: a valid tenants file exits 0, an invalid one 2 with
// one line; nothing is started.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("tenants:\n  - name: Bad Name\n  - name: also bad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", exampleConfig(t)}, &stdout, &stderr); code != 0 {
		t.Fatalf("deploy/worker.yaml: exit code %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "valid, 2 tenant(s)") {
		t.Errorf("stdout %q", stdout.String())
	}
	stderr.Reset()
	if code := run([]string{"--check-config", "--config", bad}, io.Discard, &stderr); code != 2 {
		t.Fatalf("bad file: exit code %d, want 2", code)
	}
	// A name that is none is not quoted (a secret pasted there would
	// be shown): the tenants are named by their numbers.
	if out := stderr.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "tenant 2: name must match") || strings.Contains(out, "Bad Name") {
		t.Errorf("bad file: want one line naming the tenants by their numbers, got %q", out)
	}

	// Flags the worker refuses at start are refused by the check too.
	example := exampleConfig(t)
	for _, flags := range [][]string{
		{"--nats-inbox-prefix", "a b"}, {"--replica-id", "bad id!"}, {"--tlscert", "cert.pem"},
		{"--log-level", "bogus"}, {"--log-format", "bogus"}, {"--nats-url", "nats://u:p@h:x"},
	} {
		stderr.Reset()
		if code := run(append([]string{"--check-config", "--config", example}, flags...), io.Discard, &stderr); code != 2 {
			t.Errorf("--check-config %v: exit code %d, want 2 as the worker's start", flags, code)
		}
	}

	// A file the worker would refuse against its flags is not valid
	// either: a budget or a window longer than its journal keeps, a
	// tracking longer than the ledger keeps its actions. No secret is
	// read: the variable named is not set.
	tenant := "tenants:\n  - name: contoso\n    tenantId: 11111111-2222-3333-4444-555555555555\n" +
		"    clientId: 66666666-7777-8888-9999-000000000000\n    clientSecretEnv: MDE_TEST_UNSET_SECRET\n"
	for name, tc := range map[string]struct{ extra, want string }{
		"budget":   {"    guards: {budget: \"10/100h\"}\n", "longer than the budget history"},
		"window":   {"    limits: {offboard: [\"10/3h\"]}\n", "quota history 2h0m0s is shorter"},
		"tracking": {"    tracking: {enabled: true, maxAge: 720h}\n", "not shorter than the ledger TTL 720h0m0s"},
	} {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(tenant+tc.extra), 0o600); err != nil {
			t.Fatal(err)
		}
		stderr.Reset()
		if code := run([]string{"--check-config", "--config", path}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit code %d, stderr %q; want 2 and %q", name, code, stderr.String(), tc.want)
		}
		if code := run([]string{"--check-config", "--config", path, "--quota-history", "4h", "--budget-history", "200h", "--ledger-ttl", "1000h"}, io.Discard, &stderr); code != 0 {
			t.Errorf("%s with the histories raised: exit code %d", name, code)
		}
	}
	// A window next to the longest Duration: the window and the call
	// lease added must not wrap round to a short back the quota history
	// seems to keep.
	path := filepath.Join(dir, "longest.yaml")
	if err := os.WriteFile(path, []byte(tenant+"    limits: {offboard: [\"1/2562047h47m16s\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"--check-config", "--config", path}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "quota history 2h0m0s is shorter") {
		t.Errorf("window 1/2562047h47m16s: exit code %d, stderr %q; want 2 and the quota history", code, stderr.String())
	}
}

// TestOldEnvironmentVariables: the old, unprefixed name still sets its
// flag and is reported; the MDE_OFFBOARD_ name wins over it, the command
// line over both.
func TestOldEnvironmentVariables(t *testing.T) {
	t.Setenv("LISTEN", "127.0.0.1:1111")
	t.Setenv("DATA_DIR", "/old")
	t.Setenv("MDE_OFFBOARD_DATA_DIR", "/new")
	t.Setenv("SUBJECT_PREFIX", "old.prefix")
	c, err := parseFlags([]string{"--subject-prefix", "cli.prefix"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.o.Listen != "127.0.0.1:1111" || c.o.DataDir != "/new" || c.o.SubjectPrefix != "cli.prefix" {
		t.Errorf("listen %q, data dir %q, prefix %q", c.o.Listen, c.o.DataDir, c.o.SubjectPrefix)
	}
	if len(c.oldEnv) != 1 || c.oldEnv[0] != "LISTEN" {
		t.Errorf("old variables reported: %v, want [LISTEN]", c.oldEnv)
	}
}

// TestRunStopsOnSIGTERMWhileStarting: a SIGTERM while the worker waits for
// its NATS cluster (two servers of three down) stops it at once, exit 0,
// as it would once started: a pod deleted while it starts is not an error.
func TestRunStopsOnSIGTERMWhileStarting(t *testing.T) {
	c := natstest.Start(t, 3)
	c.Shutdown(1)
	c.Shutdown(2)
	var stderr lockedBuffer
	exit := make(chan int, 1)
	listen := freePort(t)
	args := []string{"--config", tenantsFile(t), "--nats-url", c.URLs(), "--stream-replicas", "3",
		"--listen", listen, "--log-format", "console"}
	go func() { exit <- run(args, io.Discard, &stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "NATS cannot take the streams yet") {
		select {
		case code := <-exit:
			t.Fatalf("exit code %d before it waited for NATS:\n%s", code, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wait for NATS after 30s:\n%s", stderr.String())
		}
	}
	if code := sigterm(t, exit, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM while starting, want 0:\n%s", code, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "stopped before the start was over") {
		t.Errorf("no word of the stop:\n%s", out)
	}
	// What was up is stopped: the HTTP address is free again.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("--listen %s still taken after the stop: %v", listen, err)
	}
	_ = ln.Close()
}

// TestRunFailedStartAtSIGTERMIsAFailure: a start that fails for a reason
// of its own (a NATS server that takes the connection and never answers)
// while a SIGTERM waits is a failed start, exit 1, not a stop as asked.
func TestRunFailedStartAtSIGTERMIsAFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	var stderr lockedBuffer
	exit := make(chan int, 1)
	args := []string{"--config", tenantsFile(t), "--nats-url", "nats://" + ln.Addr().String(),
		"--listen", freePort(t), "--log-format", "console"}
	go func() { exit <- run(args, io.Discard, &stderr) }()
	// The connection comes from Start: the signal handler is in place.
	select {
	case conn := <-accepted:
		defer conn.Close()
	case code := <-exit:
		t.Fatalf("exit code %d before it connected:\n%s", code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("no connection to the silent NATS server after 20s")
	}
	if code := sigterm(t, exit, 20*time.Second); code != 1 {
		t.Fatalf("exit code %d for a start that failed on its own, want 1:\n%s", code, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "connect to NATS") || strings.Contains(out, "stopped before the start was over") {
		t.Errorf("the failed connection is not the error:\n%s", out)
	}
}

// tenantsFile writes a tenants file with one tenant, contoso, and its
// secret file.
func tenantsFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	secret, cfg := filepath.Join(dir, "secret"), filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "tenants:\n  - name: contoso\n    tenantId: 11111111-2222-3333-4444-555555555555\n"+
		"    clientId: 66666666-7777-8888-9999-000000000000\n    clientSecretFile: %s\n", secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lockedBuffer is a bytes.Buffer the command writes to while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunSIGTERMWithACallUnderWayAtTheTimeout: a SIGTERM while an
// offboard call is under way, its answer held past --shutdown-timeout
// (the action is created, the answer never comes). The call is
// cancelled, the request goes back to the stream, and the stop, which
// lost nothing, exits 0. Started again, the worker finds the action the
// call created through the request's "calling" entry: one action, one
// result, no second call.
func TestRunSIGTERMWithACallUnderWayAtTheTimeout(t *testing.T) {
	h := newHeldCall(t, "1s")
	var stderr lockedBuffer
	exit := make(chan int, 1)
	h.startAndCall(t, &stderr, exit)
	if code := sigterm(t, exit, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, its request put back, want 0:\n%s", code, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "left for redelivery") {
		t.Errorf("no word of the request put back:\n%s", out)
	}
	h.answeredOnceAfterRestart(t, exit)
}

// TestRunSecondSIGTERMCancelsRequestsUnderWay: a second SIGTERM during
// the stop, the call under way never answered and --shutdown-timeout 10
// minutes, ends the wait at once, as the timeout would: the call is
// cancelled, the request goes back to the stream, and the stop exits 0
// within seconds. Started again, the worker answers the request once,
// with the action the first call created.
func TestRunSecondSIGTERMCancelsRequestsUnderWay(t *testing.T) {
	h := newHeldCall(t, "10m")
	var stderr lockedBuffer
	exit := make(chan int, 1)
	h.startAndCall(t, &stderr, exit)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &stderr, exit, "stopping: finishing requests under way")
	if code := sigterm(t, exit, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after a second SIGTERM, its request put back, want 0:\n%s", code, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "second signal: cancelling requests under way") {
		t.Errorf("no word of the second signal:\n%s", out)
	}
	if !strings.Contains(out, "left for redelivery") {
		t.Errorf("no word of the request put back:\n%s", out)
	}
	h.answeredOnceAfterRestart(t, exit)
}

// heldCall is a worker with one tenant on an embedded NATS server, whose
// first offboard call takes effect and whose answer waits until the
// caller gives up.
type heldCall struct {
	sim                *mdesim.Server
	tenantID, machine  string
	called             chan struct{}
	args               []string
	httpAddr, natsAddr string
}

// newHeldCall sets up the API and the worker's flags, with the
// --shutdown-timeout given.
func newHeldCall(t *testing.T, shutdownTimeout string) *heldCall {
	t.Helper()
	sim := mdesim.New(mdesim.Options{})
	const tenantID, clientID = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
	sim.AddTenant(mdesim.Tenant{TenantID: tenantID, ClientID: clientID, ClientSecret: "cmd-test-secret"})
	machine := mdesim.Machine{ID: mdesim.NewMachineID(), ComputerDNSName: "pc-1.contoso.local", OSPlatform: "Windows11"}
	sim.AddMachine(tenantID, machine)
	h := &heldCall{sim: sim, tenantID: tenantID, machine: machine.ID, called: make(chan struct{})}
	var held sync.Once
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/offboard") {
			sim.Handler().ServeHTTP(w, r)
			return
		}
		hold := false
		held.Do(func() { hold = true })
		if !hold {
			sim.Handler().ServeHTTP(w, r)
			return
		}
		sim.Handler().ServeHTTP(httptest.NewRecorder(), r)
		close(h.called)
		<-r.Context().Done()
	}))
	t.Cleanup(api.Close)

	dir := t.TempDir()
	cfg := oneTenantFile(t, dir, tenantID, clientID, "cmd-test-secret", api.Certificate().Raw, api.URL, api.URL)
	h.httpAddr, h.natsAddr = freePort(t), freePort(t)
	h.args = []string{"--config", cfg, "--data-dir", filepath.Join(dir, "nats"), "--embedded-listen", h.natsAddr,
		"--listen", h.httpAddr, "--shutdown-timeout", shutdownTimeout, "--log-format", "console", "--ack-wait", "5s"}
	return h
}

// oneTenantFile writes, in dir, the tenants file of tenant contoso with
// a client secret file holding secret and a CA file of the certificate
// caDER, its API at apiBase and its login host at authority, and
// returns its path.
func oneTenantFile(t *testing.T, dir, tenantID, clientID, secret string, caDER []byte, apiBase, authority string) string {
	t.Helper()
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secretFile := write("secret", []byte(secret+"\n"))
	ca := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	return write("worker.yaml", fmt.Appendf(nil, `tenants:
  - name: contoso
    tenantId: %s
    clientId: %s
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    caFile: %s
`, tenantID, clientID, secretFile, apiBase, authority, ca))
}

// startAndCall runs the worker, publishes one request and returns once
// its offboard call is under way.
func (h *heldCall) startAndCall(t *testing.T, stderr *lockedBuffer, exit chan int) {
	t.Helper()
	go func() { exit <- run(h.args, io.Discard, stderr) }()
	waitReady(t, h.httpAddr, exit)
	nc, err := nats.Connect("nats://" + h.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"requestId": "held-1", "machineId": h.machine})
	if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso", body); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.called:
	case <-time.After(20 * time.Second):
		t.Fatalf("no offboard call after 20s:\n%s", stderr.String())
	}
}

// answeredOnceAfterRestart starts the worker again, stopped with its
// request put back: the request comes back and is answered with the
// action its first call created, and the worker stops on SIGTERM.
func (h *heldCall) answeredOnceAfterRestart(t *testing.T, exit chan int) {
	t.Helper()
	var stderr lockedBuffer
	go func() { exit <- run(h.args, io.Discard, &stderr) }()
	waitReady(t, h.httpAddr, exit)
	nc, err := nats.Connect("nats://" + h.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(t.Context(), "MDE_OFFBOARD_RESULTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("no result: %v\n%s", err, stderr.String())
	}
	var res struct {
		Outcome       string
		MachineAction struct{ ID string }
	}
	actions := h.sim.Actions(h.tenantID)
	if err := json.Unmarshal(msg.Data(), &res); err != nil || res.Outcome != "created" || len(actions) != 1 || res.MachineAction.ID != actions[0].ID {
		t.Errorf("result %s, %d actions; want created with the one action", msg.Data(), len(actions))
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second)); err == nil {
		t.Error("a second result")
	}
	if sent := sentOffboards(t, js); sent != 1 {
		t.Errorf("%d offboard calls in the quota journal as sent, want 1", sent)
	}
	offboards := 0
	for _, c := range h.sim.Calls() {
		if c.API == "offboard" {
			offboards++
		}
	}
	if offboards != 1 {
		t.Errorf("%d offboard calls, want 1", offboards)
	}
	nc.Close()
	if code := sigterm(t, exit, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, started again, want 0:\n%s", code, stderr.String())
	}
}

// sentOffboards counts the offboard calls the quota journal holds as
// sent: each counts as one that went out, its place reserved before it,
// its end written at the stop with the time it ended (a place given
// back has none).
func sentOffboards(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	journal, err := js.OrderedConsumer(t.Context(), "MDE_OFFBOARD_QUOTA", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		API string
		ID  uint64
		At  int64
	}
	ends := map[string]int64{} // by writer and id: when the call ended, 0 if never sent
	for {
		m, err := journal.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		var ev struct {
			W         string
			Res, Done []call
		}
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		for _, c := range ev.Res {
			if c.API == "offboard" {
				ends[fmt.Sprint(ev.W, c.ID)] = -1
			}
		}
		for _, c := range ev.Done {
			if c.API == "offboard" {
				ends[fmt.Sprint(ev.W, c.ID)] = c.At
			}
		}
	}
	sent := 0
	for _, at := range ends {
		if at != 0 {
			sent++
		}
	}
	return sent
}

// waitLog waits until the worker's log holds text.
func waitLog(t *testing.T, log *lockedBuffer, exit <-chan int, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), text) {
		select {
		case code := <-exit:
			t.Fatalf("exit code %d before the log said %q:\n%s", code, text, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 20s:\n%s", text, log.String())
		}
	}
}

// TestRunStopsOnSIGHUP: SIGHUP, the terminal or SSH session the worker
// runs in closing, stops it as SIGTERM does, exit 0, instead of killing
// it.
func TestRunStopsOnSIGHUP(t *testing.T) {
	// Caught here too, so a worker that does not catch it fails the test
	// instead of killing the test binary. This also takes back a nohup's
	// ignoring of SIGHUP, should the tests run under one.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)
	var stderr lockedBuffer
	exit := make(chan int, 1)
	startIdle(t, &stderr, exit)
	if code := stopWith(t, syscall.SIGHUP, exit, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGHUP, want 0:\n%s", code, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "hangup signal received") || !strings.Contains(out, "stopped") {
		t.Errorf("no word of a stop on SIGHUP:\n%s", out)
	}
}

// TestRunUnderNohupIgnoresSIGHUP: started with SIGHUP ignored (nohup),
// the worker leaves it ignored: a SIGHUP does nothing, and the SIGTERM
// after it is the signal that stops the worker, not a second one.
func TestRunUnderNohupIgnoresSIGHUP(t *testing.T) {
	signal.Ignore(syscall.SIGHUP)
	t.Cleanup(func() { signal.Reset(syscall.SIGHUP) })
	var stderr lockedBuffer
	exit := make(chan int, 1)
	startIdle(t, &stderr, exit)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := sigterm(t, exit, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGHUP and SIGTERM, want 0:\n%s", code, stderr.String())
	}
	out := stderr.String()
	if strings.Contains(out, "hangup") || strings.Contains(out, "second signal") || !strings.Contains(out, "terminated signal received") {
		t.Errorf("SIGHUP under nohup was not ignored:\n%s", out)
	}
}

// startIdle runs the worker with one tenant on an embedded NATS server,
// and returns once it is ready.
func startIdle(t *testing.T, stderr *lockedBuffer, exit chan int) {
	t.Helper()
	httpAddr := freePort(t)
	args := []string{"--config", tenantsFile(t), "--data-dir", t.TempDir(), "--embedded-listen", freePort(t),
		"--listen", httpAddr, "--log-format", "console"}
	go func() { exit <- run(args, io.Discard, stderr) }()
	waitReady(t, httpAddr, exit)
}

// sigterm sends this process SIGTERM, as Kubernetes does to stop a pod,
// and returns the worker's exit status, failing the test if it still runs
// after within.
func sigterm(t *testing.T, exit <-chan int, within time.Duration) int {
	t.Helper()
	return stopWith(t, syscall.SIGTERM, exit, within)
}

// stopWith sends this process sig and returns the worker's exit status,
// failing the test if it still runs after within.
func stopWith(t *testing.T, sig syscall.Signal, exit <-chan int, within time.Duration) int {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		return code
	case <-time.After(within):
		t.Fatalf("still running %v after %v", within, sig)
		return 0
	}
}

// waitReady waits until the worker's /readyz answers 200.
func waitReady(t *testing.T, addr string, exit <-chan int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case code := <-exit:
			t.Fatalf("worker exited with %d before it was ready", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready after 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUnknownEnvironmentVariables: an MDE_OFFBOARD_ variable that sets no
// flag, a misspelt name most likely, is told at start and by
// --check-config, by name, never by value (it may hold a password); it
// was ignored without a word, and the setting it meant kept its default.
func TestUnknownEnvironmentVariables(t *testing.T) {
	t.Setenv("MDE_OFFBOARD_SHUTDOWN_TIMOUT", "2m")
	t.Setenv("MDE_OFFBOARD_NATS_PASWORD", "s3cret-value")
	t.Setenv("MDE_OFFBOARD_LISTEN", "127.0.0.1:0")
	// What Kubernetes sets for a Service named mde-offboard in the
	// namespace, unless enableServiceLinks is false: not a misspelling.
	t.Setenv("MDE_OFFBOARD_SERVICE_HOST", "10.0.0.1")
	t.Setenv("MDE_OFFBOARD_SERVICE_PORT", "9090")
	t.Setenv("MDE_OFFBOARD_SERVICE_PORT_METRICS", "9090")
	t.Setenv("MDE_OFFBOARD_PORT", "tcp://10.0.0.1:9090")
	t.Setenv("MDE_OFFBOARD_PORT_9090_TCP_ADDR", "10.0.0.1")
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"MDE_OFFBOARD_NATS_PASWORD", "MDE_OFFBOARD_SHUTDOWN_TIMOUT"}; !slices.Equal(c.unknownEnv, want) {
		t.Errorf("unknown variables %v, want %v", c.unknownEnv, want)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", exampleConfig(t)}, &stdout, &stderr); code != 0 {
		t.Fatalf("--check-config: exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"MDE_OFFBOARD_SHUTDOWN_TIMOUT", "MDE_OFFBOARD_NATS_PASWORD", "sets no flag"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--check-config stderr %q lacks %q", stderr.String(), want)
		}
	}
	if strings.Contains(stderr.String()+stdout.String(), "s3cret-value") {
		t.Error("--check-config shows a variable's value")
	}
}

// refusedInOneLine runs the worker with args at start and with
// --check-config (and checkArgs), and wants each run refused as bad
// usage: exit 2, one line on stderr holding every one of want and none
// of hide.
func refusedInOneLine(t *testing.T, what string, args, checkArgs, want []string, hide ...string) {
	t.Helper()
	for _, check := range []bool{false, true} {
		argv := args
		if check {
			argv = append(append(append([]string{}, args...), "--check-config"), checkArgs...)
		}
		var stderr bytes.Buffer
		code := run(argv, io.Discard, &stderr)
		out := stderr.String()
		ok := code == 2 && strings.Count(out, "\n") == 1
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		for _, h := range hide {
			ok = ok && !strings.Contains(out, h)
		}
		if !ok {
			t.Errorf("%s (check %v): exit %d, stderr %.300q; want 2 and one line saying %q", what, check, code, out, want)
		}
	}
}
