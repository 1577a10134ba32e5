package app

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// outageEnv is a worker on NATS servers the test shuts down and restarts
// while the worker drains a backlog.
func outageEnv(t *testing.T, nodes int) (*env, *natstest.Cluster) {
	t.Helper()
	c := natstest.Start(t, nodes)
	win := mdesim.Window{Count: 10, Length: time.Second}
	e := setup(t, envConfig{
		sim:      mdesim.Options{Limits: map[string][]mdesim.Window{"offboard": {win}}, Latency: 10 * time.Millisecond},
		limits:   `["10/1s"]`,
		machines: outageRequests, ackWait: outageAckWait, noStart: true,
	})
	e.opts.NATSURL = c.URLs()
	e.opts.Queue.Replicas = nodes
	e.start()
	// The publisher and the results' reader know every server, as the
	// worker does.
	e.nc.Close()
	e.connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	return e, c
}

// outageRequests is each tenant's backlog: 4 s of quota for the two tenants.
const outageRequests = 40

// outageAckWait is the request consumers' ack wait. A request whose
// handling an outage cut off is taken up again at once (a nak, sent when
// NATS is back), but one delivered at the moment its server went down
// never reached the worker, and only its ack wait brings it back: the
// README advises a short one on a cluster.
const outageAckWait = 10 * time.Second

// drainThrough publishes both tenants' backlogs and, as the results come,
// runs each outage once the given share of results is in. It checks one
// result and one action per request, and no window exceeded; it returns
// how long after each outage the last result came.
func drainThrough(t *testing.T, e *env, at []float64, outages ...func()) []time.Duration {
	t.Helper()
	res := e.collect("mde.offboard.result.>")
	total := 2 * outageRequests
	for _, tenant := range []string{"contoso", "fabrikam"} {
		e.offboardEach(tenant, tenant+"-", 0, outageRequests)
	}
	back := make([]time.Time, len(outages))
	for i, outage := range outages {
		// The worker's progress, as the API sees it: the results' reader
		// may lag behind after an outage.
		eventually(t, 60*time.Second, "calls before the outage", func() bool {
			return e.apiCalls("offboard") >= int(at[i]*float64(total))
		})
		outage()
		back[i] = time.Now()
	}
	res.wait(t, total, 40*time.Second)
	time.Sleep(time.Second) // strays: a second result would come within a poll or two
	var last time.Time
	for key, rs := range res.snapshot() {
		if rs[0].CompletedAt.After(last) {
			last = rs[0].CompletedAt
		}
		if len(rs) != 1 {
			t.Errorf("%s: %d results", key, len(rs))
		}
		if rs[0].Outcome != offboard.OutcomeCreated && rs[0].Outcome != offboard.OutcomeAlreadyPending {
			t.Errorf("%s: outcome %s %+v", key, rs[0].Outcome, rs[0].Error)
		}
	}
	for name, tt := range e.tenants {
		e.oneActionEach(name, outageRequests)
		if n := e.sim.MaxInWindow(tt.tenantID, "offboard", mdesim.Window{Count: 10, Length: time.Second}); n > 10 {
			t.Errorf("%s: %d calls in a 1s window of 10", name, n)
		}
	}
	var since []time.Duration
	for _, b := range back {
		since = append(since, last.Sub(b))
	}
	return since
}

// TestClusterLeadersLostMidDrain runs the worker on a three-node cluster
// with streams of three replicas. Mid-drain, the leader of the quota
// journal's stream is shut down and restarted, later the leader of the
// request stream: every request gets one result, no window is exceeded,
// no device gets a second action, and the drain goes on at once.
func TestClusterLeadersLostMidDrain(t *testing.T) {
	t.Parallel()
	e, c := outageEnv(t, 3)
	since := drainThrough(t, e, []float64{0.2, 0.6}, bounceLeader(t, e, c, offboard.StreamQuota), bounceLeader(t, e, c, offboard.StreamRequests))
	t.Logf("last result %v after the quota leader came back, %v after the request leader did",
		since[0].Round(10*time.Millisecond), since[1].Round(10*time.Millisecond))
}

// bounceLeader is an outage: the server leading stream shut down and
// restarted on its store.
func bounceLeader(t *testing.T, e *env, c *natstest.Cluster, stream string) func() {
	return func() {
		i := c.StreamLeader(t.Context(), e.js, stream)
		t.Logf("shutting down %s, leader of %s", c.Name(i), stream)
		c.Shutdown(i)
		c.Restart(i)
	}
}

// TestClusterLedgerAndResultsLeadersLostMidDrain: mid-drain, the leader
// of the ledger's stream is shut down and restarted, later the leader of
// the results stream: the ledger entries and results cut off are written
// again, every request gets one result, no device a second action.
func TestClusterLedgerAndResultsLeadersLostMidDrain(t *testing.T) {
	t.Parallel()
	e, c := outageEnv(t, 3)
	since := drainThrough(t, e, []float64{0.2, 0.6},
		bounceLeader(t, e, c, "KV_"+offboard.BucketLedger), bounceLeader(t, e, c, offboard.StreamResults))
	t.Logf("last result %v after the ledger's leader came back, %v after the results' leader did",
		since[0].Round(10*time.Millisecond), since[1].Round(10*time.Millisecond))
}

// TestClusterWithoutQuorumForAMoment: two servers of three down at once
// for a few seconds mid-drain, the one the worker is connected to left
// up: no stream has a quorum and every write fails. Once they are back
// the drain goes on: one result and one action per request, no window
// exceeded.
func TestClusterWithoutQuorumForAMoment(t *testing.T) {
	t.Parallel()
	e, c := outageEnv(t, 3)
	since := drainThrough(t, e, []float64{0.3}, func() {
		w := c.Index(e.app.nc.ConnectedServerName())
		a, b := (w+1)%3, (w+2)%3
		c.Shutdown(a)
		c.Shutdown(b)
		time.Sleep(3 * time.Second) // the outage itself
		c.Restart(a)
		c.Restart(b)
	})
	t.Logf("last result %v after the quorum came back", since[0].Round(10*time.Millisecond))
}

// TestClusterNodeBackWithAnEmptyStore: mid-drain, the leader of the
// ledger's stream loses its disk and comes back empty; it takes the
// streams again from the others, and every request gets one result.
func TestClusterNodeBackWithAnEmptyStore(t *testing.T) {
	t.Parallel()
	e, c := outageEnv(t, 3)
	since := drainThrough(t, e, []float64{0.3}, func() {
		i := c.StreamLeader(t.Context(), e.js, "KV_"+offboard.BucketLedger)
		t.Logf("%s, leader of the ledger, back with an empty store", c.Name(i))
		c.Shutdown(i)
		c.Wipe(i)
		c.Restart(i)
	})
	t.Logf("last result %v after the server came back", since[0].Round(10*time.Millisecond))
}

// TestServerRestartMidDrain restarts a lone NATS server on its store
// mid-drain: the worker reconnects by itself, the requests cut off are
// taken up again at once (not after their ack wait), and every request
// gets one result.
func TestServerRestartMidDrain(t *testing.T) {
	t.Parallel()
	e, c := outageEnv(t, 1)
	since := drainThrough(t, e, []float64{0.4}, func() {
		c.Shutdown(0)
		time.Sleep(500 * time.Millisecond)
		c.Restart(0)
	})
	t.Logf("last result %v after NATS came back", since[0].Round(10*time.Millisecond))
}

// apiCalls is how many calls of api the simulator has seen.
func (e *env) apiCalls(api string) int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.API == api {
			n++
		}
	}
	return n
}

// startWithoutQuorum starts an app against three clustered servers of
// which two are down, and returns once the start has said n times that
// it waits for NATS to take the streams (a step without an answer fails
// after the client's timeout, 5 s, then the start tries again). started
// gets the start's answer.
func startWithoutQuorum(t *testing.T, n int) (*natstest.Cluster, *env, *App, chan error) {
	t.Helper()
	c := natstest.Start(t, 3)
	c.Shutdown(1)
	c.Shutdown(2)
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{machines: 1, noStart: true, logger: zap.New(core)})
	e.opts.NATSURL = c.URLs()
	e.opts.Queue.Replicas = 3
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- a.Start(t.Context()) }()
	for logs.FilterMessage("NATS cannot take the streams yet; trying again").Len() < n {
		select {
		case err := <-started:
			t.Fatalf("the start ended with two servers of three down: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return c, e, a, started
}

// TestStartWaitsForTheCluster: a worker started while two of its three
// NATS servers are down finds no JetStream (no quorum: its requests go
// unanswered); it tries again until the servers are back, then starts
// and serves, rather than stopping.
func TestStartWaitsForTheCluster(t *testing.T) {
	t.Parallel()
	c, e, a, started := startWithoutQuorum(t, 2)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	c.Restart(1)
	c.Restart(2)
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start after the servers came back: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the worker had not started 45 s after the servers came back")
	}
	e.connect(c.URLs(), nats.MaxReconnects(-1))
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "after-forming", "machineId": e.tenants["contoso"].machines[0].ID}, "after-forming")
	got := res.wait(t, 1, 30*time.Second)
	if r := got["contoso/after-forming"]; len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
		t.Fatalf("result %+v, want one, created", r)
	}
}

// TestStartWithoutJetStreamFailsAtOnce: a NATS server without JetStream
// (its API has no responders) is a refusal, not a server not ready yet:
// the start fails at once, without waiting for it.
func TestStartWithoutJetStreamFailsAtOnce(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{machines: 1, noStart: true, logger: zap.New(core)})
	e.opts.NATSURL = ns.ClientURL()
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	if err := a.Start(t.Context()); err == nil {
		t.Fatal("started on a NATS server without JetStream")
	}
	if n := logs.FilterMessage("NATS cannot take the streams yet; trying again").Len(); n != 0 {
		t.Errorf("waited %d times for a NATS server without JetStream", n)
	}
}
