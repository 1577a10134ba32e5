package app

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// tenantCalls counts an app's offboard calls by tenant, from its metrics.
func tenantCalls(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "mde_offboard_api_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["api"] == "offboard" && m.GetCounter().GetValue() > 0 {
				out[labels["tenant"]] += int(m.GetCounter().GetValue())
			}
		}
	}
	return out
}

// numberedTenants names n tenants t00, t01, ...
func numberedTenants(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%02d", i)
	}
	return names
}

// announcements reads the presence bucket: each replica's announcement.
func (e *env) announcements() map[string][]byte {
	e.t.Helper()
	kv, err := e.js.KeyValue(e.t.Context(), queue.BucketPresence)
	if err != nil {
		e.t.Fatal(err)
	}
	keys, err := kv.ListKeys(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]byte{}
	for k := range keys.Keys() {
		if entry, err := kv.Get(e.t.Context(), k); err == nil {
			out[k] = entry.Value()
		}
	}
	return out
}

// waitCanCall waits until the replica id announces that it can make
// calls (no "aside" in its announcement).
func (e *env) waitCanCall(id string) {
	e.t.Helper()
	eventually(e.t, 10*time.Second, id+" announcing it can call", func() bool {
		data, ok := e.announcements()[id]
		var a struct {
			Aside bool `json:"aside"`
		}
		return ok && json.Unmarshal(data, &a) == nil && !a.Aside
	})
}

// crash stops an app as if its process died: its announcement stays in
// the presence bucket (put back after the stop withdrew it), so the other
// replicas learn of it only when the announcement expires.
func (e *env) crash(a *App, id string, announcement []byte) {
	e.t.Helper()
	if err := a.Stop(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	kv, err := e.js.KeyValue(e.t.Context(), queue.BucketPresence)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(e.t.Context(), id, announcement); err != nil {
		e.t.Fatal(err)
	}
}

// TestTenantsSpreadAcrossReplicas runs two replicas with 20 tenants: each
// tenant's calls come from one replica, and each replica has a fair share
// of the tenants. Then one replica dies without a word: its tenants are
// served by the other within a few presence beats, and every request still
// gets one result and one action.
func TestTenantsSpreadAcrossReplicas(t *testing.T) {
	t.Parallel()
	names := numberedTenants(20)
	e := setup(t, envConfig{tenants: names, machines: 4, noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	// Named, so that the split is the same in every run.
	e.opts.ReplicaID = "replica-a"
	e.start()
	regA := e.reg
	// A replica announces itself aside until it has read the quota
	// journal, and says it can call at its next look (a quarter beat):
	// B started meanwhile would split the tenants with A as two replicas
	// aside, then take them back and forth as each can call.
	e.waitCanCall("replica-a")
	before := e.announcements()
	e.opts.ReplicaID = "replica-b"
	b := e.startReplica(names...)
	// Requests published before B can call would go to A, and their
	// tenants' later ones to B.
	e.waitCanCall("replica-b")
	eventually(t, 10*time.Second, "the tenants split between A and B", func() bool {
		onA, onB := assignedTenants(t, e.reg), assignedTenants(t, b.opts.Registry)
		return len(onA)+len(onB) == len(names) && len(onA) > 0 && len(onB) > 0
	})
	var idB string
	var annB []byte
	for id, a := range e.announcements() {
		if _, ok := before[id]; !ok {
			idB, annB = id, a
		}
	}
	regB := b.opts.Registry

	res := e.collect("mde.offboard.result.>")
	for _, n := range names {
		e.offboardEach(n, n+"-a-", 0, 2)
	}
	res.wait(t, 40, 30*time.Second)
	callsA, callsB := tenantCalls(t, regA), tenantCalls(t, regB)
	var onB []string
	for _, n := range names {
		if callsA[n] > 0 && callsB[n] > 0 {
			t.Errorf("tenant %s: calls from both replicas (%d, %d)", n, callsA[n], callsB[n])
		}
		if callsB[n] > 0 {
			onB = append(onB, n)
		}
	}
	t.Logf("tenants on A: %d, on B: %d %v", len(callsA), len(callsB), onB)
	// Rendezvous hashing: 3 or fewer of 20 on one side would be a hash
	// that spreads nothing.
	if len(callsA) < 3 || len(callsB) < 3 {
		t.Errorf("tenants split %d/%d, want roughly even", len(callsA), len(callsB))
	}

	e.crash(b, idB, annB)
	crashed := time.Now()
	for _, n := range names {
		e.offboardEach(n, n+"-b-", 2, 4)
	}
	got := res.wait(t, 80, 30*time.Second)
	t.Logf("B's %d tenants served by A %v after B died (beat 300ms)", len(onB), time.Since(crashed).Round(10*time.Millisecond))
	for key, rs := range got {
		if len(rs) != 1 {
			t.Errorf("%s: %d results", key, len(rs))
		}
	}
	for _, n := range names {
		e.oneActionEach(n, 4)
	}
}

// TestStoppingReplicasTenantsMoveAtOnce: replica A stops while one of
// its requests has a call under way (the API is slow to answer it). New
// requests of A's tenants, that one's included, are taken by B at once,
// not after A's last request under way is over, and A's gauges say it
// takes none. Before, A announced its tenants until its stop was over:
// they waited up to --shutdown-timeout, and its gauges said they were
// A's.
func TestStoppingReplicasTenantsMoveAtOnce(t *testing.T) {
	t.Parallel()
	names := numberedTenants(6)
	e := setup(t, envConfig{tenants: names, machines: 2, noStart: true})
	// Named, not random: with random names all six tenants went to B in
	// one run of 64, and the wait for a split never ended.
	e.opts.ReplicaID = "replica-a"
	e.start()
	regA := e.reg
	e.opts.ReplicaID = "replica-b"
	b := e.startReplica(names...)
	var onA []string
	eventually(t, 20*time.Second, "the tenants split between A and B", func() bool {
		onA = assignedTenants(t, regA)
		return len(onA)+len(assignedTenants(t, b.opts.Registry)) == len(names) && len(onA) > 0
	})
	tenant := onA[0]
	tt := e.tenants[tenant]
	release := e.sim.HoldAnswers(tt.tenantID, tt.machines[0].ID)
	defer release()
	res := e.collect("mde.offboard.result.>")
	e.offboardEach(tenant, "slow-", 0, 1)
	eventually(t, 10*time.Second, "A's call under way", func() bool { return e.offboardCalls(tt.tenantID, tt.machines[0].ID) > 0 })

	stopped := make(chan error, 1)
	go func() { stopped <- e.app.Stop(context.Background()) }()
	time.Sleep(200 * time.Millisecond) // A is stopping
	e.offboardEach(tenant, "next-", 1, 2)
	begin := time.Now()
	// B answers in well under a second; A, before, held the tenant until
	// its call under way was over.
	for time.Since(begin) < 4*time.Second && len(res.snapshot()[tenant+"/next-1"]) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if len(res.snapshot()[tenant+"/next-1"]) == 0 {
		t.Errorf("a new request of %s has no result %v after A began to stop", tenant, time.Since(begin).Round(time.Millisecond))
	}
	if got := assignedTenants(t, regA); len(got) > 0 {
		t.Errorf("A, stopping, says it takes the requests of %v", got)
	}
	release()
	if err := testwait.For(t, stopped, time.Minute, "Stop to return"); err != nil {
		t.Fatal(err)
	}
	t.Logf("A stopped %v after the new request", time.Since(begin).Round(time.Millisecond))
	got := res.wait(t, 2, 30*time.Second)
	for key, rs := range got {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: %d results, first %s", key, len(rs), rs[0].Outcome)
		}
	}
}
