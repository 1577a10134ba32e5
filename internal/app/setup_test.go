package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/testcert"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The HTTP client's idle keep-alive connections to the simulator.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// testTenant is a tenant known to both the simulator and the worker.
type testTenant struct {
	name, tenantID, clientID, secret string
	machines                         []mdesim.Machine
}

type env struct {
	t       *testing.T
	sim     *mdesim.Server
	base    string
	tenants map[string]*testTenant
	dir     string
	app     *App
	reg     *prometheus.Registry
	opts    Options
	nc      *nats.Conn
	js      jetstream.JetStream
}

type envConfig struct {
	sim      mdesim.Options
	limits   string // YAML flow list for offboard, e.g. ["10/200ms", "40/2s"]
	tenants  []string
	machines int // per tenant
	logger   *zap.Logger
	ackWait  time.Duration
	extra    string   // YAML appended to every tenant entry
	certs    []string // tenants that log in with a certificate instead of a secret
	workload []string // tenants that log in with a workload identity token file
	tweak    func(*config.File)
	noStart  bool // build e.opts only; the test starts its own app
}

func newID() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// setup starts the simulator and the worker app with an embedded NATS
// server, and connects a publisher.
func setup(t *testing.T, c envConfig) *env {
	t.Helper()
	if len(c.tenants) == 0 {
		c.tenants = []string{"contoso", "fabrikam"}
	}
	if c.limits == "" {
		c.limits = `["100/1m", "1500/1h"]`
	}
	c.sim.ShuffleLists = true // the real order is not documented: rely on none
	e := &env{t: t, sim: mdesim.New(c.sim), tenants: map[string]*testTenant{}, dir: t.TempDir()}
	e.base = e.sim.StartTLS()
	t.Cleanup(e.sim.Close)
	// Whatever a test does, the worker must never fill a window: the
	// simulator keeps the documented limits unless the test set others.
	t.Cleanup(func() {
		for name, tt := range e.tenants {
			for _, api := range []string{"offboard", "machines", "machineactions"} {
				if n := e.sim.ThrottledCount(tt.tenantID, api); n != 0 {
					t.Errorf("%s: the simulator answered %d %s calls 429 for a full window", name, n, api)
				}
			}
		}
	})

	var yaml strings.Builder
	yaml.WriteString("tenants:\n")
	for _, name := range c.tenants {
		tt := &testTenant{name: name, tenantID: newGUID(), clientID: newGUID(), secret: "s3cr3t-" + newID()}
		if !slices.Contains(c.certs, name) && !slices.Contains(c.workload, name) {
			e.sim.AddTenant(mdesim.Tenant{TenantID: tt.tenantID, ClientID: tt.clientID, ClientSecret: tt.secret})
		}
		for i := range c.machines {
			m := mdesim.Machine{ID: newID(), ComputerDNSName: fmt.Sprintf("pc-%04d.%s.local", i, name),
				OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)}
			e.sim.AddMachine(tt.tenantID, m)
			tt.machines = append(tt.machines, m)
		}
		credential := "clientSecretFile: " + filepath.Join(e.dir, name+".secret")
		switch {
		case slices.Contains(c.certs, name):
			cert, pemFile := newCertificate(t, e.dir, name)
			e.sim.AddTenant(mdesim.Tenant{TenantID: tt.tenantID, ClientID: tt.clientID, Certificate: cert})
			credential = "certificateFile: " + pemFile
		case slices.Contains(c.workload, name):
			token := "eyJhbGciOiJSUzI1NiJ9.projected-" + newID() + ".sig" // what the kubelet projects
			tokenFile := filepath.Join(e.dir, name+".token")
			if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
				t.Fatal(err)
			}
			e.sim.AddTenant(mdesim.Tenant{TenantID: tt.tenantID, ClientID: tt.clientID, FederatedToken: token})
			credential = "workloadIdentity: true\n    tokenFile: " + tokenFile
		default:
			if err := os.WriteFile(filepath.Join(e.dir, name+".secret"), []byte(tt.secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&yaml, `  - name: %s
    tenantId: %s
    clientId: %s
    %s
    apiBaseURL: %s
    authorityHost: %s
    maxInFlight: 4
    limits:
      offboard: %s
%s`, name, tt.tenantID, tt.clientID, credential, e.base, e.base, c.limits, c.extra)
		e.tenants[name] = tt
	}
	f, err := config.Parse([]byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.tweak != nil {
		c.tweak(f)
	}
	e.reg = prometheus.NewRegistry()
	if c.logger == nil {
		c.logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	if c.ackWait == 0 {
		c.ackWait = 10 * time.Second
	}
	e.opts = Options{
		Tenants:        f,
		DataDir:        filepath.Join(e.dir, "nats"),
		EmbeddedListen: "127.0.0.1:-1",
		Listen:         "127.0.0.1:0",
		Logger:         c.logger,
		Registry:       e.reg,
		HTTPClient: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, // every tenant's calls under way
			TLSClientConfig:     &tls.Config{RootCAs: e.sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
		Retry: worker.RetryPolicy{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Poll:  200 * time.Millisecond,
		Queue: queue.Settings{AckWait: c.ackWait},
	}
	if !c.noStart {
		e.start()
	}
	return e
}

// newCertificate makes a self-signed certificate and writes it with its key
// as one PEM file, the form certificateFile takes.
func newCertificate(t *testing.T, dir, name string) (*x509.Certificate, string) {
	t.Helper()
	path := filepath.Join(dir, name+".pem")
	cert, _ := testcert.Write(t, path, name+"-offboard")
	return cert, path
}

// start starts (or restarts) the app and connects the publisher.
func (e *env) start() {
	t := e.t
	t.Helper()
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.app = a
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	e.connect(a.NATSURL())
}

// connect connects the publisher and the results' reader to the servers.
func (e *env) connect(urls string, opts ...nats.Option) {
	e.t.Helper()
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		e.t.Fatal(err)
	}
}

// stop stops the app, closing the embedded server with it.
func (e *env) stop() {
	e.t.Helper()
	e.nc.Close()
	if err := e.app.Stop(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	// A fresh registry for the next app in the same test.
	e.reg = prometheus.NewRegistry()
	e.opts.Registry = e.reg
}

// publish sends a request; msgID "" sends none.
func (e *env) publish(subject string, body any, msgID string) *jetstream.PubAck {
	e.t.Helper()
	var data []byte
	switch b := body.(type) {
	case []byte:
		data = b
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ack, err := e.js.PublishMsg(e.t.Context(), m)
	if err != nil {
		e.t.Fatalf("publish to %s: %v", subject, err)
	}
	return ack
}

// results collects results until want distinct keys arrived (keyed by
// requestId, or by requestSeq when the id is empty), then waits a moment
// for strays.
type collector struct {
	mu      sync.Mutex
	byKey   map[string][]offboard.Result
	headers map[string][]string
	cc      jetstream.ConsumeContext
}

func (e *env) collect(filter string) *collector {
	e.t.Helper()
	c := &collector{byKey: map[string][]offboard.Result{}, headers: map[string][]string{}}
	// A three-node cluster just started, on a busy machine, may not answer
	// the stream lookup within the API's timeout: try again a few times.
	var cons jetstream.Consumer
	var err error
	for attempt := 1; ; attempt++ {
		cons, err = e.js.OrderedConsumer(e.t.Context(), offboard.StreamResults, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{filter},
		})
		if err == nil || attempt == 5 || !errors.Is(err, context.DeadlineExceeded) {
			break
		}
		e.t.Logf("results reader, attempt %d: %v", attempt, err)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		var r offboard.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			e.t.Errorf("result is not JSON: %v", err)
			return
		}
		key := r.Tenant + "/" + r.RequestID
		if r.RequestID == "" {
			key = fmt.Sprintf("%s/seq-%d", r.Tenant, r.RequestSeq)
		}
		c.mu.Lock()
		c.byKey[key] = append(c.byKey[key], r)
		c.headers[key] = append(c.headers[key], m.Headers().Get(jetstream.MsgIDHeader))
		c.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.cc.Stop)
	return c
}

// wait blocks until n distinct requests have results or the deadline.
func (c *collector) wait(t *testing.T, n int, d time.Duration) map[string][]offboard.Result {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		got := len(c.byKey)
		c.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d results after %v: %v", got, n, d, slices.Collect(maps.Keys(c.snapshot())))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c.snapshot()
}

// streamMsgs reports how many messages a stream holds.
func (e *env) streamMsgs(name string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// oneActionEach checks that the simulator holds exactly one action for each
// of devices devices of a tenant.
func (e *env) oneActionEach(tenant string, devices int) {
	e.t.Helper()
	perMachine := map[string]int{}
	for _, a := range e.sim.Actions(e.tenants[tenant].tenantID) {
		perMachine[a.MachineID]++
	}
	if len(perMachine) != devices {
		e.t.Errorf("%s: actions for %d devices, want %d", tenant, len(perMachine), devices)
	}
	for m, n := range perMachine {
		if n != 1 {
			e.t.Errorf("%s: device %s has %d actions", tenant, m, n)
		}
	}
}
