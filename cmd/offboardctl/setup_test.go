package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

const tenant = "contoso"

// testEnv is a NATS server with JetStream, the simulator with one tenant, and
// a worker (internal/app) that tests start and stop on their own: the
// server outlives it, so requests can wait while no worker serves.
type testEnv struct {
	t        *testing.T
	url      string
	sim      *mdesim.Server
	tenantID string
	machines []mdesim.Machine
	dir      string
	opts     app.Options
	app      *app.App
	js       jetstream.JetStream
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newEnv(t *testing.T, machines int) *testEnv {
	t.Helper()
	return newEnvWith(t, machines, 0)
}

// newEnvWith is newEnv with the simulator answering each API call after
// latency.
func newEnvWith(t *testing.T, machines int, latency time.Duration) *testEnv {
	t.Helper()
	return newEnvLimited(t, machines, latency, "5000/1m")
}

// newEnvLimited is newEnvWith with the tenant's offboard limit
// ("<count>/<duration>").
func newEnvLimited(t *testing.T, machines int, latency time.Duration, offboardLimit string) *testEnv {
	t.Helper()
	return newEnvSim(t, machines, offboardLimit, mdesim.Options{Latency: latency})
}

// newEnvSim is newEnvLimited with the simulator's options (it is always
// unlimited and shuffles its lists).
func newEnvSim(t *testing.T, machines int, offboardLimit string, sim mdesim.Options) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), tenantID: "11111111-2222-3333-4444-" + randHex(6)}
	ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: filepath.Join(e.dir, "nats"), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	e.url = ns.ClientURL()
	e.setup(machines, offboardLimit, sim)
	return e
}

// newClusterEnv is newEnv on three clustered NATS servers, the worker's
// streams of three replicas; e.url names all three.
func newClusterEnv(t *testing.T, machines int) (*testEnv, *natstest.Cluster) {
	t.Helper()
	c := natstest.Start(t, 3)
	e := &testEnv{t: t, dir: t.TempDir(), tenantID: "11111111-2222-3333-4444-" + randHex(6), url: c.URLs()}
	e.setup(machines, "5000/1m", mdesim.Options{})
	e.opts.Queue.Replicas = 3
	return e, c
}

// serverURL is the URL of server i of c alone.
func serverURL(c *natstest.Cluster, i int) string { return strings.Split(c.URLs(), ",")[i] }

// setup connects to e.url and sets up the simulator, with machines
// devices, and the worker's options (see newEnvSim).
func (e *testEnv) setup(machines int, offboardLimit string, sim mdesim.Options) {
	t := e.t
	t.Helper()
	nc, err := nats.Connect(e.url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	sim.Unlimited, sim.ShuffleLists = true, true
	e.sim = mdesim.New(sim)
	base := e.sim.StartTLS()
	t.Cleanup(e.sim.Close)
	clientID, secret := "66666666-7777-8888-9999-"+randHex(6), "s3cr3t-"+randHex(8)
	e.sim.AddTenant(mdesim.Tenant{TenantID: e.tenantID, ClientID: clientID, ClientSecret: secret})
	for i := range machines {
		m := mdesim.Machine{ID: randHex(20), ComputerDNSName: fmt.Sprintf("pc-%04d.contoso.local", i),
			OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Now().Add(-90 * 24 * time.Hour)}
		e.sim.AddMachine(e.tenantID, m)
		e.machines = append(e.machines, m)
	}
	secretFile := filepath.Join(e.dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(fmt.Appendf(nil, `tenants:
  - name: %s
    tenantId: %s
    clientId: %s
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    maxInFlight: 8
    limits:
      offboard: ["%s"]
      machines: ["5000/1m"]
`, tenant, e.tenantID, clientID, secretFile, base, base, offboardLimit))
	if err != nil {
		t.Fatal(err)
	}
	e.opts = app.Options{
		Tenants: f, NATSURL: e.url, Listen: "127.0.0.1:0", Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		HTTPClient: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 16,
			TLSClientConfig:     &tls.Config{RootCAs: e.sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
		Retry: worker.RetryPolicy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Poll:  100 * time.Millisecond,
		Queue: queue.Settings{AckWait: 10 * time.Second},
	}
}

// startWorker starts a worker; it is stopped at the end of the test, or by
// stopWorker.
func (e *testEnv) startWorker() {
	e.t.Helper()
	e.opts.Registry = prometheus.NewRegistry()
	a, err := app.New(e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := a.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.app = a
	e.t.Cleanup(func() { _ = a.Stop(context.Background()) })
}

func (e *testEnv) stopWorker() {
	e.t.Helper()
	if err := e.app.Stop(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// ctl runs offboardctl in-process against the test's NATS server.
func (e *testEnv) ctl(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runContext(ctx, append([]string{"--nats-url", e.url}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// connected is a cli of the test's NATS server, connected, with its
// output discarded, for a test that calls its parts; closed at the end.
func (e *testEnv) connected() (*cli, jetstream.JetStream) {
	e.t.Helper()
	c := &cli{conn: queue.Conn{URL: e.url}, prefix: offboard.DefaultPrefix, subjects: offboard.Subjects{Prefix: offboard.DefaultPrefix},
		timeout: 5 * time.Second, stdout: io.Discard, stderr: io.Discard}
	js, err := c.connect(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.close)
	return c, js
}

// results reads every result of the tenant stored now.
func (e *testEnv) results() []*offboard.Result {
	e.t.Helper()
	var out []*offboard.Result
	err := scan(e.t.Context(), e.js, offboard.StreamResults, offboard.Subjects{}.Result(tenant), func(m jetstream.Msg) {
		if r, ok := decodeResult(m); ok {
			out = append(out, r)
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// lastSeq is the request stream's last sequence: it moves only when a
// request is stored.
func (e *testEnv) lastSeq() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), offboard.StreamRequests)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq
}

// waitFor waits until cond holds, checking whenever a result is stored.
func (e *testEnv) waitFor(what string, d time.Duration, cond func() bool) {
	e.t.Helper()
	sub, err := e.js.Conn().SubscribeSync(offboard.Subjects{}.Result(tenant))
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	deadline := time.Now().Add(d)
	for !cond() {
		left := time.Until(deadline)
		if left <= 0 {
			e.t.Fatalf("not within %v: %s", d, what)
		}
		// A result stored, or a second: then look again.
		_, _ = sub.NextMsg(min(left, time.Second))
	}
}

// requestsWaiting is the number of requests in the request stream: a
// request leaves once its result is stored.
func (e *testEnv) requestsWaiting() uint64 { return e.stored(offboard.StreamRequests) }

// deadLetters is the number of dead letters stored.
func (e *testEnv) deadLetters() uint64 { return e.stored(offboard.StreamDead) }

// stored is the number of messages in stream.
func (e *testEnv) stored(stream string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// writeFile writes body to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// numberedCSV is a campaign CSV of rows rows, naming machine ids 1 to
// rows (40 hexadecimal digits): devices the simulator need not know.
func numberedCSV(rows int) string {
	var b strings.Builder
	b.WriteString("machineId\n")
	for i := range rows {
		fmt.Fprintf(&b, "%040x\n", i+1)
	}
	return b.String()
}

// idsCSV is a campaign CSV naming the machines by id, one row each.
func idsCSV(machines []mdesim.Machine) string {
	var b strings.Builder
	b.WriteString("machineId\n")
	for _, m := range machines {
		b.WriteString(m.ID + "\n")
	}
	return b.String()
}
