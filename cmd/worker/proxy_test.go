package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// asMain, set in a child process's environment, has the test binary run
// the worker's main instead of the tests: the proxy settings Go reads
// from the environment are read once per process, so a test that sets
// them needs a process of its own.
const asMain = "WORKER_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestLoginAndAPIThroughHTTPSProxy: with HTTPS_PROXY set, as an egress
// proxy in a corporate network needs, the worker reaches the login host
// and the API host through the proxy (HTTP CONNECT), and a request is
// answered created. The two hosts have names only the proxy resolves, so
// a call that went around the proxy would fail.
func TestLoginAndAPIThroughHTTPSProxy(t *testing.T) {
	t.Parallel()
	sim := mdesim.New(mdesim.Options{})
	const tenantID, clientID = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
	sim.AddTenant(mdesim.Tenant{TenantID: tenantID, ClientID: clientID, ClientSecret: "proxy-test-secret"})
	machine := mdesim.Machine{ID: mdesim.NewMachineID(), ComputerDNSName: "pc-1.contoso.local", OSPlatform: "Windows11"}
	sim.AddMachine(tenantID, machine)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := mdesim.NewSelfSignedCert("api.sim.test", "login.sim.test")
	if err != nil {
		t.Fatal(err)
	}
	sim.StartTLSListener(ln, &cert)
	t.Cleanup(sim.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	proxy := startConnectProxy(t, ln.Addr().String())

	dir := t.TempDir()
	cfg := oneTenantFile(t, dir, tenantID, clientID, "proxy-test-secret", cert.Leaf.Raw,
		"https://api.sim.test:"+port, "https://login.sim.test:"+port)
	httpAddr, natsAddr := freePort(t), freePort(t)

	cmd := exec.CommandContext(t.Context(), os.Args[0], "--config", cfg, "--data-dir", filepath.Join(dir, "nats"),
		"--embedded-listen", natsAddr, "--listen", httpAddr, "--log-format", "console")
	cmd.Env = append(withoutProxySettings(os.Environ()), asMain+"=1", "HTTPS_PROXY=http://"+proxy.addr)
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exit := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		exit <- cmd.ProcessState.ExitCode()
	}()
	waitReady(t, httpAddr, exit)

	data, err := firstResult(t, natsAddr, "proxied-1", machine.ID, 30*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var res struct{ Outcome string }
	if err := json.Unmarshal(data, &res); err != nil || res.Outcome != "created" || len(sim.Actions(tenantID)) != 1 {
		t.Errorf("result %s, %d actions; want created, through the proxy\n%s", data, len(sim.Actions(tenantID)), stderr.String())
	}
	for _, host := range []string{"login.sim.test:" + port, "api.sim.test:" + port} {
		if !slices.Contains(proxy.tunnels(), host) {
			t.Errorf("no tunnel to %s through the proxy; tunnels: %q", host, proxy.tunnels())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit 30s after SIGTERM:\n%s", stderr.String())
	}
}

// withoutProxySettings is env without the proxy variables Go reads, in
// either case.
func withoutProxySettings(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "REQUEST_METHOD":
			return true
		}
		return false
	})
}

// connectProxy is an HTTP proxy that tunnels every CONNECT to one
// address, whatever host it names, and records the hosts named.
type connectProxy struct {
	addr  string
	mu    sync.Mutex
	hosts []string
}

func (p *connectProxy) tunnels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.hosts)
}

// startConnectProxy serves a connectProxy to target until the test ends.
func startConnectProxy(t *testing.T, target string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.tunnel(conn, target) })
		}
	})
	return p
}

// tunnel reads one CONNECT request from conn and joins conn to target.
func (p *connectProxy) tunnel(conn net.Conn, target string) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = io.WriteString(conn, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.mu.Lock()
	p.hosts = append(p.hosts, req.Host)
	p.mu.Unlock()
	up, err := net.Dial("tcp", target)
	if err != nil {
		_, _ = io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done
}
