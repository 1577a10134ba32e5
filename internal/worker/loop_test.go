package worker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

const (
	loopTenantID = "11111111-2222-3333-4444-555555555555"
	loopClientID = "66666666-7777-8888-9999-000000000000"
	loopMachine  = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
)

// loopEnv is one tenant's worker on a fake clock, against an embedded NATS
// server and the simulator (on real time).
type loopEnv struct {
	w       *Worker
	sim     *mdesim.Server
	clock   *clockwork.FakeClock
	js      jetstream.JetStream
	results chan offboard.Result
}

// setupLoop starts a worker for tenant "contoso" with the given offboard
// windows.
func setupLoop(t *testing.T, offboardLimits string, retry RetryPolicy) *loopEnv {
	t.Helper()
	return setupLoopWith(t, offboardLimits, "", retry)
}

// setupLoopWith is setupLoop with YAML added to the tenant's entry, after
// its offboard limits.
func setupLoopWith(t *testing.T, offboardLimits, extra string, retry RetryPolicy) *loopEnv {
	t.Helper()
	return setupLoopOpts(t, offboardLimits, extra, retry, nil)
}

// setupLoopOpts is setupLoopWith with the worker's options changed by opt
// (nil: none).
func setupLoopOpts(t *testing.T, offboardLimits, extra string, retry RetryPolicy, opt func(*Options)) *loopEnv {
	t.Helper()
	return setupLoopTransport(t, offboardLimits, extra, retry, opt, nil)
}

// setupLoopTransport is setupLoopOpts with the API client's transport
// (not the credential's) wrapped by wrap (nil: as it is).
func setupLoopTransport(t *testing.T, offboardLimits, extra string, retry RetryPolicy, opt func(*Options), wrap func(http.RoundTripper) http.RoundTripper) *loopEnv {
	t.Helper()
	return setupLoopSim(t, mdesim.Options{}, offboardLimits, extra, retry, opt, wrap)
}

// setupLoopSim is setupLoopTransport with the simulator's options.
func setupLoopSim(t *testing.T, simOpts mdesim.Options, offboardLimits, extra string, retry RetryPolicy, opt func(*Options), wrap func(http.RoundTripper) http.RoundTripper) *loopEnv {
	t.Helper()
	e := newLoopEnv(t, simOpts, offboardLimits, extra, retry, opt, wrap)
	e.w.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.w.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return e
}

// newLoopEnv is setupLoopSim with the worker made and not started: its
// loops do not run, a test calls what it needs of them.
func newLoopEnv(t *testing.T, simOpts mdesim.Options, offboardLimits, extra string, retry RetryPolicy, opt func(*Options), wrap func(http.RoundTripper) http.RoundTripper) *loopEnv {
	t.Helper()
	e := &loopEnv{sim: mdesim.New(simOpts), clock: clockwork.NewFakeClock(), results: make(chan offboard.Result, 16)}
	base := e.sim.StartTLS()
	t.Cleanup(e.sim.Close)
	dir := t.TempDir()
	e.sim.AddTenant(mdesim.Tenant{TenantID: loopTenantID, ClientID: loopClientID, ClientSecret: "s3cr3t"})
	e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: loopMachine, ComputerDNSName: "pc-1.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(fmt.Appendf(nil, `tenants:
  - name: contoso
    tenantId: %s
    clientId: %s
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    limits:
      offboard: %s
%s`, loopTenantID, loopClientID, filepath.Join(dir, "secret"), base, base, offboardLimits, extra))
	if err != nil {
		t.Fatal(err)
	}
	tc := f.Tenants[0]
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.sim.CertPool(), MinVersion: tls.VersionTLS12}}}
	t.Cleanup(hc.CloseIdleConnections)
	cred, err := mde.NewCredential(tc.Credential(), tc.Resolved.Cloud, hc)
	if err != nil {
		t.Fatal(err)
	}
	api := hc
	if wrap != nil {
		api = &http.Client{Transport: wrap(hc.Transport)}
	}
	client := mde.NewClient(mde.Options{Cloud: tc.Resolved.Cloud, Credential: cred, HTTPClient: api})

	ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	settings := queue.Settings{Tenants: []string{"contoso"}}.WithDefaults()
	if _, err := queue.Ensure(t.Context(), e.js, settings); err != nil {
		t.Fatal(err)
	}
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	router, err := queue.NewRouter(nc, settings.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	sub, err := nc.Subscribe(settings.Subjects.Result("contoso"), func(m *nats.Msg) {
		var r offboard.Result
		if json.Unmarshal(m.Data, &r) == nil {
			e.results <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	opts := Options{
		JS: e.js, Settings: settings, Ledger: ledger, Router: router,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Metrics: NewMetrics(prometheus.NewRegistry()),
		Clock: e.clock, Retry: retry, Seed: 1, StatsEvery: time.Hour,
	}
	if opt != nil {
		opt(&opts)
	}
	e.w, err = New(t.Context(), opts, []*Tenant{{Config: tc, Client: client, Cred: cred}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *loopEnv) publish(t *testing.T, id string) {
	t.Helper()
	e.publishFor(t, id, loopMachine)
}

// wantCreated waits for the next result, which must be id's, created.
func (e *loopEnv) wantCreated(t *testing.T, id string) {
	t.Helper()
	if r := e.nextResult(t, id); r.RequestID != id || r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("result %s %s %+v, want %s created", r.RequestID, r.Outcome, r.Error, id)
	}
}

// nextResult waits 20 s at most for the next result, expected to be
// id's (named if none comes).
func (e *loopEnv) nextResult(t *testing.T, id string) offboard.Result {
	t.Helper()
	return testwait.For(t, e.results, 20*time.Second, "a result for "+id)
}

// publishFor publishes a request of contoso for a device.
func (e *loopEnv) publishFor(t *testing.T, id, machine string) {
	t.Helper()
	e.publishRequest(t, id, map[string]any{"machineId": machine})
}

// publishRequest publishes request id of contoso, normal priority, with
// the members given beside its requestId.
func (e *loopEnv) publishRequest(t *testing.T, id string, members map[string]any) {
	t.Helper()
	members["requestId"] = id
	data, _ := json.Marshal(members)
	m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "contoso:"+id)
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// TestRetryGetsTheOnlyPermit: with room for one call a minute, a request
// whose first call failed gets the next place in the window. The tenant's
// loop, idle meanwhile, must not hold it while it waits for a message.
func TestRetryGetsTheOnlyPermit(t *testing.T) {
	t.Parallel()
	// The backoff (2m to 4m) ends after the window has room again, so an
	// idle loop that takes a permit takes it first.
	e := setupLoop(t, `["1/1m"]`, RetryPolicy{Base: 4 * time.Minute, Max: 4 * time.Minute})
	e.sim.InjectStatus(loopTenantID, "offboard", http.StatusInternalServerError, "", "", 1, 0)
	e.publish(t, "r-1")
	// Drive the fake clock until the result comes.
	start := e.clock.Now()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-e.results:
			if r.Outcome != offboard.OutcomeCreated || r.Attempts != 2 {
				t.Fatalf("result %+v, want created after 2 attempts", r)
			}
			return
		case <-tick.C:
			e.clock.Advance(5 * time.Second)
		case <-deadline:
			t.Fatalf("no result after %v of fake time: the retry never got a permit", e.clock.Since(start))
		}
	}
}

// TestIdleTenantHasItsWholeQuota: an idle tenant holds no permit, so the
// calls left in each window are the limit.
func TestIdleTenantHasItsWholeQuota(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["5/1m", "50/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	// Past every window: nothing the tenant did counts any more.
	e.clock.Advance(2 * time.Hour)
	l := e.w.tenants["contoso"].limits.API(mde.APIOffboard)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rem := l.Remaining(e.clock.Now())
		if rem[0] == 5 && rem[1] == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an idle tenant has %v calls left, want [5 50]", rem)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The gauge says so too.
	e.clock.Advance(time.Hour) // the stats loop's turn
	gauge := e.w.m.QuotaRemaining.WithLabelValues("contoso", mde.APIOffboard, "1m")
	for testutil.ToFloat64(gauge) != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_quota_remaining_calls{window=1m} = %v, want 5", testutil.ToFloat64(gauge))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleStopCancelsNothing: a worker with no request under way stops
// within a stop timeout shorter than its poll (2 s), without saying it
// cancelled requests: before, the unrouted consumer's pull held the stop
// for the whole poll, and Stop answered ErrCancelled.
func TestIdleStopCancelsNothing(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := e.w.Stop(ctx); err != nil {
		t.Errorf("Stop of an idle worker: %v", err)
	}
}

// TestIdleStopAfterItsTimeCancelsNothing: a stop whose time was spent
// before it began (the announcement that the replica leaves waited for a
// NATS server away) finds no request under way: it says so, not that it
// cancelled 0 requests that come back from the stream.
func TestIdleStopAfterItsTimeCancelsNothing(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.w.Stop(ctx); err != nil {
		t.Errorf("Stop of an idle worker, its time already over: %v", err)
	}
}
