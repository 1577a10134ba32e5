package app

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// busyPort holds a TCP port for the test and returns its address.
func busyPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// startErr starts an app with o and returns the error Start gave; a start
// that succeeds fails the test.
func startErr(t *testing.T, o Options) error {
	t.Helper()
	o.Registry = prometheus.NewRegistry()
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(t.Context())
	if err == nil {
		_ = a.Stop(context.Background())
		t.Fatal("Start succeeded")
	}
	return err
}

// TestStartBusyEmbeddedPortSaysSo: a busy port of the embedded server is
// reported as such, at once, not as a server that never became ready.
func TestStartBusyEmbeddedPortSaysSo(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	o := e.opts
	o.EmbeddedListen = busyPort(t)
	err := startErr(t, o)
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not say the address is in use", err)
	}
}

// TestStartNamesUnreachableNATS: the error names the server it could not
// reach, without the credentials in its URL.
func TestStartNamesUnreachableNATS(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	o := e.opts
	o.NATSURL = "nats://worker:hunter2@" + addr
	err = startErr(t, o)
	msg := err.Error()
	if !strings.Contains(msg, "nats://"+addr) {
		t.Errorf("error %q does not name nats://%s", msg, addr)
	}
	if strings.Contains(msg, "hunter2") || strings.Contains(msg, "worker@") {
		t.Errorf("error %q carries the URL's credentials", msg)
	}
}

// TestStartSaysNATSHasNoJetStream: a NATS server without JetStream stops
// the start with an error that says so, not "no responders".
func TestStartSaysNATSHasNoJetStream(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	o := e.opts
	o.NATSURL = natstest.StartWithoutJetStream(t, false)
	if err := startErr(t, o); !strings.Contains(err.Error(), "the NATS server has no JetStream") {
		t.Errorf("error %q does not say the server has no JetStream", err)
	}
}

// TestStartSaysMaxPayloadIsTooSmall: a NATS server whose max_payload is
// 64 KiB takes requests it cannot take the dead letters of (a request
// near 64 KiB that fails came back for ever, its dead letter refused):
// the start stops with an error that says so.
func TestStartSaysMaxPayloadIsTooSmall(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	o := e.opts
	o.NATSURL = natstest.StartWithMaxPayload(t, 64<<10)
	if err := startErr(t, o); !strings.Contains(err.Error(), "max_payload is 65536 bytes") {
		t.Errorf("error %q does not say the server's max_payload is too small", err)
	}
}

// TestStartBindsListenFirst: a busy --listen port fails the start before
// any NATS connection is tried and before the embedded server's storage
// is touched.
func TestStartBindsListenFirst(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	fakeNATS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fakeNATS.Close()

	o := e.opts
	o.Listen = busyPort(t)
	o.NATSURL = "nats://" + fakeNATS.Addr().String()
	if err := startErr(t, o); !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not say the address is in use", err)
	}
	// A connection that was tried waits in the listener's backlog, and
	// Accept returns it at once; the deadline only bounds the wait when
	// there is none (a deadline already past would not look).
	_ = fakeNATS.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := fakeNATS.Accept(); err == nil {
		c.Close()
		t.Error("Start connected to NATS although its HTTP port was busy")
	}

	o = e.opts
	o.Listen = busyPort(t)
	o.DataDir = filepath.Join(e.dir, "never")
	startErr(t, o)
	if _, err := os.Stat(o.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("embedded server storage %s created although the HTTP port was busy (%v)", o.DataDir, err)
	}
}

// TestNATSConnectedGauge: mde_offboard_nats_connected goes 0 when the NATS
// server goes away and 1 when it is back.
func TestNATSConnectedGauge(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	storeDir := filepath.Join(e.dir, "external-nats")
	ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: storeDir, Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().String()
	servers := []interface{ Shutdown() }{ns}
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
	})

	o := e.opts
	o.NATSURL = ns.ClientURL()
	a, changes := startWatchingConn(t, o)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	gauge := func() float64 { return testutil.ToFloat64(a.connected) }
	waitFor := func(want bool) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case up := <-changes:
				if up == want {
					return
				}
			case <-timeout:
				t.Fatalf("no change of the NATS connection to %v within 20s", want)
			}
		}
	}
	if gauge() != 1 {
		t.Fatalf("nats_connected = %v after Start, want 1", gauge())
	}

	ns.Shutdown()
	waitFor(false)
	if gauge() != 0 {
		t.Errorf("nats_connected = %v with the server down, want 0", gauge())
	}
	if a.Ready(t.Context()) == nil {
		t.Error("ready with the server down")
	}

	again, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: storeDir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	servers = append(servers, again)
	waitFor(true)
	if gauge() != 1 {
		t.Errorf("nats_connected = %v with the server back, want 1", gauge())
	}
	if v := metricValue(t, e, "mde_offboard_nats_connected", nil); v != 1 {
		t.Errorf("/metrics registry: nats_connected = %v, want 1", v)
	}
}

// TestStartSaysNATSRefusedTheInbox: under deploy/nats/accounts.conf, a
// worker whose --nats-inbox-prefix its user may not read gets no answer
// from JetStream; it stops at once saying NATS refused it, rather than
// take the silence for a cluster not ready and wait it out.
// t.Setenv: not parallel.
func TestStartSaysNATSRefusedTheInbox(t *testing.T) {
	url := natstest.StartFromConfig(t, "../../deploy/nats/accounts.conf", "pw",
		"OFFBOARDCTL_PASSWORD", "MDE_OFFBOARD_WORKER_PASSWORD", "CONTOSO_CMDB_PASSWORD", "CONTOSO_GOV_CMDB_PASSWORD")
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	o := e.opts
	o.NATSURL = strings.Replace(url, "nats://", "nats://mde-offboard-worker:pw@", 1)
	o.NATSInboxPrefix = "_INBOX_bogus"
	start := time.Now()
	err := startErr(t, o)
	if !strings.Contains(err.Error(), "NATS refused this user") || !strings.Contains(err.Error(), "--nats-inbox-prefix") {
		t.Errorf("error %q does not say NATS refused the user", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the start took %v to give up", d)
	}
}

// startWatchingConn starts an App with o, whose NATS connection's ups and
// downs come on changes.
func startWatchingConn(t *testing.T, o Options) (a *App, changes chan bool) {
	t.Helper()
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	changes = make(chan bool, 64)
	a.onConnChange = func(up bool) {
		select {
		case changes <- up:
		default:
		}
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return a, changes
}
