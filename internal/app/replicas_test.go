package app

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// offboardCalls is how many offboard calls an app's metrics count.
func offboardCalls(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "mde_offboard_api_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "api" && l.GetValue() == "offboard" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}

// TestReplicasShareTheQuotaAndARestartKeepsIt runs three workers against one
// NATS server and one tenant, then stops them all, NATS included, and starts
// one again: the API never sees a window exceeded, neither while the three
// run (one of them works the tenant) nor after the restart, when the long
// window is still full of the calls made before it.
func TestReplicasShareTheQuotaAndARestartKeepsIt(t *testing.T) {
	t.Parallel()
	short := mdesim.Window{Count: 10, Length: time.Second}
	long := mdesim.Window{Count: 40, Length: 8 * time.Second}
	e := setup(t, envConfig{
		sim:     mdesim.Options{Limits: map[string][]mdesim.Window{"offboard": {short, long}}, Latency: 20 * time.Millisecond},
		limits:  `["10/1s", "40/8s"]`,
		tenants: []string{"contoso"}, machines: 60,
	})
	tt := e.tenants["contoso"]
	regs := []*prometheus.Registry{e.reg}
	var replicas []*App
	for range 2 {
		o := e.opts
		o.NATSURL = e.app.NATSURL()
		o.Registry = prometheus.NewRegistry()
		a, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Stop(context.Background()) })
		replicas = append(replicas, a)
		regs = append(regs, o.Registry)
	}

	// A replica starts aside, until it has read the quota journal:
	// requests published before the last can call would go to another,
	// and the tenant would move to it mid-drain.
	eventually(t, 10*time.Second, "the three replicas announcing they can call, one working the tenant", func() bool {
		all := e.announcements()
		for _, data := range all {
			var a struct {
				Aside bool `json:"aside"`
			}
			if json.Unmarshal(data, &a) != nil || a.Aside {
				return false
			}
		}
		working := 0
		for _, reg := range regs {
			working += len(assignedTenants(t, reg))
		}
		return len(all) == 3 && working == 1
	})
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "r", 0, 40)
	res.wait(t, 40, 30*time.Second)
	busy := 0
	for i, reg := range regs {
		n := offboardCalls(t, reg)
		t.Logf("replica %d made %d offboard calls", i, n)
		if n > 0 {
			busy++
		}
	}
	// The tenant is assigned to one replica; the journal is what holds the
	// windows when a hand-over lets two work it at once.
	if busy != 1 {
		t.Errorf("%d replicas made calls, want the tenant's calls from one", busy)
	}
	checkWindows := func(when string) {
		t.Helper()
		for _, w := range []mdesim.Window{short, long} {
			if n := e.sim.MaxInWindow(tt.tenantID, "offboard", w); n > w.Count {
				t.Errorf("%s: the API saw %d calls in a %v window of %d", when, n, w.Length, w.Count)
			}
		}
		if n := e.sim.ThrottledCount(tt.tenantID, "offboard"); n != 0 {
			t.Errorf("%s: %d calls answered 429 for a full window", when, n)
		}
	}
	checkWindows("three replicas")

	// Everything stops, NATS too; one worker comes back within the long
	// window, which the first 40 calls filled.
	for _, a := range replicas {
		if err := a.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.stop()
	stopped := time.Now()
	e.start()
	res = e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "r", 40, 60)
	eventually(t, 30*time.Second, "results of the 20 requests after the restart", func() bool {
		got := res.snapshot()
		for i := 40; i < 60; i++ {
			if len(got[fmt.Sprintf("contoso/r%d", i)]) == 0 {
				return false
			}
		}
		return true
	})
	checkWindows("after the restart")
	if d := time.Since(stopped); d < 2*time.Second {
		t.Errorf("20 calls %v after the restart: the long window could not have had room", d)
	}
	e.oneActionEach("contoso", 60)
}

// TestReplicasTrackEachActionOnce: a second worker that starts while the
// first follows actions loads them all from the ledger, yet each look at an
// action is made by one of them only.
func TestReplicasTrackEachActionOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 6, tenants: []string{"contoso"},
		sim: mdesim.Options{
			ActionCompleteAfter: 2 * time.Second,
			Limits:              map[string][]mdesim.Window{"machineactions": {{Count: 600, Length: time.Minute}}},
		},
		// Quota for every look: only the looks themselves are counted.
		extra: `      machineactions: ["600/1m"]
    tracking:
      enabled: true
      firstCheck: 300ms
      maxInterval: 300ms
`,
	})
	events := e.actionEvents()
	e.offboardEach("contoso", "t-", 0, 6)
	eventually(t, 10*time.Second, "every action followed", func() bool { return len(events()) == 6 })
	o := e.opts
	o.NATSURL = e.app.NATSURL()
	o.Registry = prometheus.NewRegistry()
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	allSucceeded(t, events, 6)
	// Looks at one action come a tracking interval apart; two within a
	// fraction of it are two replicas looking at once.
	looks := map[string][]time.Time{}
	for _, c := range e.sim.Calls() {
		if c.API == "machineactions" && c.Method == "GET" && c.ActionID != "" {
			looks[c.ActionID] = append(looks[c.ActionID], c.At)
		}
	}
	if len(looks) != 6 {
		t.Fatalf("looks at %d actions, want 6", len(looks))
	}
	for id, at := range looks {
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < 150*time.Millisecond {
				t.Errorf("action %s looked at twice within %v (looks at %v)", id, gap, at)
			}
		}
	}
}
