package worker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSweepGoesOnAtTheNextStatsPass: more answered requests than one
// sweep removes (a replica of an earlier release acks requests and leaves
// them, 100 a minute at a tenant's quota) are all removed within
// SweepEvery: a sweep that stopped at its bound goes on at the stats
// loop's next pass. Before, the rest waited for the next SweepEvery, and
// a steady flow of them grew in the stream.
func TestSweepGoesOnAtTheNextStatsPass(t *testing.T) {
	t.Parallel()
	const left = 250 // above the 200 a sweep removes from a subject
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		o.StatsEvery = 15 * time.Second
		o.SweepEvery = 10 * time.Minute
		ackLeftBehind(t, o.JS, left)
	})
	msgs := requestsStored(t, e.js)
	// The stats loop turns on the fake clock, a pass a tick at most; the
	// next tick waits until the stream's count settles (a sweep under way
	// is done). The tenant's first sweep falls half a SweepEvery after the
	// start.
	start, n := e.clock.Now(), msgs()
	deadline := time.Now().Add(20 * time.Second)
	for n > 0 && e.clock.Since(start) <= 3*e.w.opts.SweepEvery && time.Now().Before(deadline) {
		e.clock.Advance(e.w.opts.StatsEvery)
		for was := n + 1; n != was; {
			time.Sleep(50 * time.Millisecond)
			was, n = n, msgs()
		}
	}
	if took := e.clock.Since(start); n > 0 || took > e.w.opts.SweepEvery {
		t.Errorf("%d of %d answered requests left after %v; want none within %v", n, left, took, e.w.opts.SweepEvery)
	}
}

// TestSweepsOfAPassAreBounded: with many tenants each holding more
// answered requests than a sweep removes (here twelve no longer
// configured, as a replica of an earlier release leaves them, and the
// tenant served), a pass of the stats loop sweeps at most
// sweepsFullPerPass of them to their bound, and the next passes go on
// with the others, until none is left. Before, one pass swept every
// tenant: 2,600 requests removed in it (about 0.3 s a tenant, minutes
// at a thousand, the gauges stale meanwhile).
func TestSweepsOfAPassAreBounded(t *testing.T) {
	t.Parallel()
	const (
		left = 250 // above the 200 a sweep removes from a subject
		old  = 12
	)
	tenants := []string{"contoso"}
	for i := range old {
		tenants = append(tenants, fmt.Sprintf("old%02d", i))
	}
	// Passes of the stats loop made here, the loop not running.
	e := newLoopEnv(t, mdesim.Options{}, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		o.SweepEvery = 15 * time.Second
		if _, err := queue.Ensure(t.Context(), o.JS, queue.Settings{Tenants: tenants}); err != nil {
			t.Fatal(err)
		}
		for _, tenant := range tenants {
			ackLeftBehindOf(t, o.JS, tenant, left)
			if tenant != "contoso" {
				o.Stale = append(o.Stale, queue.ConsumerName(tenant, offboard.Normal), queue.ConsumerName(tenant, offboard.Bulk))
			}
		}
	}, nil)
	// The watch of the campaigns' marks New began, which the worker's
	// start would run and its stop end: ended with the test.
	t.Cleanup(func() { e.w.campaigns.Run(t.Context()) })
	msgs := requestsStored(t, e.js)
	// At most the full sweeps a pass may make, and a sweep of what is
	// left after a full one (left-200) for every tenant.
	const most = sweepsFullPerPass*200 + (old+1)*(left-200)
	var (
		others  othersSweep
		removed []uint64
	)
	for n := msgs(); n > 0 && len(removed) < 10; {
		e.clock.Advance(e.w.opts.SweepEvery) // every tenant due
		e.w.sweepSome(t.Context(), &others)
		was := n
		n = msgs()
		removed = append(removed, was-n)
	}
	t.Logf("removed at each pass: %v", removed)
	for i, r := range removed {
		if r > most {
			t.Errorf("pass %d removed %d requests, want %d at most", i+1, r, most)
		}
	}
	if n := msgs(); n > 0 {
		t.Errorf("%d of %d answered requests left after %d passes", n, left*(old+1), len(removed))
	}
}

// requestsStored is a count of the requests the request stream holds.
func requestsStored(t *testing.T, js jetstream.JetStream) func() uint64 {
	t.Helper()
	stream, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	return func() uint64 {
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
}

// ackLeftBehind publishes n requests of contoso and acks them through its
// consumer without deleting them, as a worker of an earlier release did.
func ackLeftBehind(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ackLeftBehindOf(t, js, "contoso", n)
}

// ackLeftBehindOf is ackLeftBehind for tenant's normal requests.
func ackLeftBehindOf(t *testing.T, js jetstream.JetStream, tenant string, n int) {
	t.Helper()
	ackLeftBehindOn(t, js, tenant, offboard.Normal, n)
}

// ackLeftBehindOn is ackLeftBehind for tenant's requests of prio.
func ackLeftBehindOn(t *testing.T, js jetstream.JetStream, tenant string, prio offboard.Priority, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	subject := offboard.Subjects{}.Request(tenant, prio)
	for i := range n {
		if _, err := js.Publish(ctx, subject, fmt.Appendf(nil, `{"requestId":"left-%d","machineId":%q}`, i, loopMachine)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName(tenant, prio))
	if err != nil {
		t.Fatal(err)
	}
	for acked := 0; acked < n; {
		batch, err := cons.Fetch(min(100, n-acked), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
			acked++
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("%d of %d acked: %v", acked, n, err)
		}
	}
}

// TestFailedSweepsOfAPassAreBounded: with NATS away or slow, every sweep
// of a pass fails, each after up to its 5 s when the server does not
// answer; a failed sweep counts against the pass's bound as one that
// stopped at it, so a pass tries at most sweepsFullPerPass. Before, only
// the sweeps that stopped at their bound counted: a pass tried every
// tenant's consumers (here the served tenant's two, the unserved
// tenants' sweep and twelve stale tenants' 24), hours at a thousand
// tenants with the server not answering, the gauges stale meanwhile.
func TestFailedSweepsOfAPassAreBounded(t *testing.T) {
	t.Parallel()
	const old = 12
	tenants := []string{"contoso"}
	for i := range old {
		tenants = append(tenants, fmt.Sprintf("old%02d", i))
	}
	core, logs := observer.New(zap.WarnLevel)
	var nc *nats.Conn
	e := newLoopEnv(t, mdesim.Options{}, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		o.SweepEvery = 15 * time.Second
		o.Logger = zap.New(core)
		if _, err := queue.Ensure(t.Context(), o.JS, queue.Settings{Tenants: tenants}); err != nil {
			t.Fatal(err)
		}
		for _, tenant := range tenants[1:] {
			o.Stale = append(o.Stale, queue.ConsumerName(tenant, offboard.Normal), queue.ConsumerName(tenant, offboard.Bulk))
		}
		// The worker's own connection, closed below: its every
		// request fails at once, as one to a server away fails after
		// its timeout.
		var err error
		if nc, err = nats.Connect(o.JS.Conn().ConnectedUrl()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if o.JS, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}, nil)
	t.Cleanup(func() { e.w.campaigns.Run(t.Context()) })
	nc.Close()
	var others othersSweep
	for pass := range 3 {
		e.clock.Advance(e.w.opts.SweepEvery) // every tenant due
		failed := func() int { return logs.FilterMessageSnippet("sweep answered requests").Len() }
		before := failed()
		e.w.sweepSome(t.Context(), &others)
		if n := failed() - before; n > sweepsFullPerPass {
			t.Errorf("pass %d: %d sweeps failed, want %d at most", pass+1, n, sweepsFullPerPass)
		}
	}
}

// TestUnservedTenantsSweptWhileTenantsFillPasses: while the tenants
// served hold more answered requests than the passes of the stats loop
// may sweep (here three, each of their six subjects holding two sweeps'
// worth and more), the requests of an unserved tenant are swept in
// their turn, not once the tenants' sweeps leave room. Before, they came
// after every due tenant's: with tenants whose requests keep coming
// faster than the passes sweep them (an earlier release's replica at a
// thousand tenants), never.
func TestUnservedTenantsSweptWhileTenantsFillPasses(t *testing.T) {
	t.Parallel()
	const left = 450 // two sweeps' worth of a subject, and more
	served := []string{"contoso", "fabrikam", "northwind"}
	e := newLoopEnv(t, mdesim.Options{}, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		o.SweepEvery = 15 * time.Second
		o.Settings.Tenants = served
		if _, err := queue.Ensure(t.Context(), o.JS, queue.Settings{Tenants: append(slices.Clone(served), "gone")}); err != nil {
			t.Fatal(err)
		}
		for _, tenant := range served {
			for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
				ackLeftBehindOn(t, o.JS, tenant, p, left)
			}
		}
		ackLeftBehindOf(t, o.JS, "gone", 50)
		o.Stale = append(o.Stale, queue.ConsumerName("gone", offboard.Normal), queue.ConsumerName("gone", offboard.Bulk))
	}, nil)
	t.Cleanup(func() { e.w.campaigns.Run(t.Context()) })
	// The other tenants served as contoso is, on the same simulator.
	tenants := []*Tenant{e.w.tenants["contoso"].Tenant}
	for _, name := range served[1:] {
		tc := *tenants[0].Config
		tc.Name = name
		tenants = append(tenants, &Tenant{Config: &tc, Client: tenants[0].Client, Cred: tenants[0].Cred})
	}
	w, err := New(t.Context(), e.w.opts, tenants)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.campaigns.Run(t.Context()) })
	stream, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	gone := func() uint64 {
		subject := offboard.Subjects{}.Request("gone", offboard.Normal)
		info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subject]
	}
	var others othersSweep
	const passes = 2
	for range passes {
		e.clock.Advance(w.opts.SweepEvery) // every tenant due
		w.sweepSome(t.Context(), &others)
	}
	if n := gone(); n > 0 {
		t.Errorf("%d of the unserved tenant's 50 answered requests left after %d passes; want none", n, passes)
	}
}
