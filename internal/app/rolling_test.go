package app

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// tenantsOnly is the tenants file f with only the tenants named, in f's
// order: a replica of an older or newer tenants file.
func tenantsOnly(f *config.File, names ...string) *config.File {
	only := *f
	only.Tenants = nil
	for _, tc := range f.Tenants {
		if slices.Contains(names, tc.Name) {
			only.Tenants = append(only.Tenants, tc)
		}
	}
	return &only
}

// startReplica starts another worker on the env's NATS server with only
// the named tenants of the env's tenants file, as a replica running an
// older or newer tenants file does during a rolling update.
func (e *env) startReplica(tenants ...string) *App {
	e.t.Helper()
	return e.startReplicaOf(e.app.NATSURL(), tenantsOnly(e.opts.Tenants, tenants...))
}

// startReplicaOf starts another app with e's options but NATS at url and
// the tenants file f, stopped when the test ends.
func (e *env) startReplicaOf(url string, f *config.File) *App {
	e.t.Helper()
	o := e.opts
	o.NATSURL = url
	o.Registry = prometheus.NewRegistry()
	o.Tenants = f
	a, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := a.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a
}

// TestRollingUpdateOneResultPerRequest: replica B serves contoso and
// fabrikam, replica A (started later, an older tenants file) only contoso.
// Every fabrikam request gets exactly one result, created: A neither
// answers it unknown_tenant through the unrouted consumer nor drains
// fabrikam's consumers as stale while B serves the tenant.
func TestRollingUpdateOneResultPerRequest(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 20})
	e.startReplica("contoso")
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("fabrikam", "f-", 0, 20)
	e.offboardEach("contoso", "c-", 0, 5)
	res.wait(t, 25, 30*time.Second)
	// Strays: a second answer would come within a poll or two.
	time.Sleep(1 * time.Second)
	res.wantOneCreatedEach(t)
	e.oneActionEach("fabrikam", 20)
}

// TestUnservedTenantAnsweredFromTheLedger: when no replica serves a tenant
// any more, a request whose id already has a result is answered with that
// result (not unknown_tenant); one whose call may be under way is left
// for later; the others are unknown_tenant.
func TestUnservedTenantAnsweredFromTheLedger(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}})
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := json.Marshal(offboard.Result{RequestID: "done-1", Tenant: "gone", Outcome: offboard.OutcomeCreated, Attempt: 1, MachineAction: json.RawMessage(`{"id":"a1"}`)})
	if err := ledger.Finish(t.Context(), "gone", "done-1", nil, 1, stored); err != nil {
		t.Fatal(err)
	}
	calling := &queue.Entry{State: queue.StateCalling, Seq: 2, MachineID: newID(), Started: time.Now().UTC()}
	if err := ledger.Put(t.Context(), "gone", "calling-1", nil, calling); err != nil {
		t.Fatal(err)
	}
	res := e.collect("mde.offboard.result.gone")
	for _, id := range []string{"done-1", "calling-1", "new-1"} {
		e.publish("mde.offboard.request.gone", map[string]any{"requestId": id, "machineId": newID()}, "gone:"+id)
	}
	res.wait(t, 2, 20*time.Second)
	time.Sleep(time.Second) // the call under way must stay unanswered
	got := res.snapshot()
	if rs := got["gone/done-1"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("done-1: %+v, want the stored created result", rs)
	}
	if rs := got["gone/new-1"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("new-1: %+v, want unknown_tenant", rs)
	}
	if rs := got["gone/calling-1"]; len(rs) != 0 {
		t.Errorf("calling-1 answered %+v while its call may be under way", rs)
	}
}

// TestUnservedTenantRetryGetsItsOwnAnswer: a retry (a higher attempt) of a
// request whose stored result is failed is not answered with that stored
// result: its message id is the stored result's, so the results stream
// would drop it and the retry would go unanswered. With no replica to
// work on it, it gets an unknown_tenant answer of its own.
func TestUnservedTenantRetryGetsItsOwnAnswer(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}})
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := json.Marshal(offboard.Result{RequestID: "failed-1", Tenant: "gone", Outcome: offboard.OutcomeFailed, Attempt: 1,
		Error: offboard.Failed(offboard.CodeAPIError, "gave up")})
	if err := ledger.Finish(t.Context(), "gone", "failed-1", nil, 1, stored); err != nil {
		t.Fatal(err)
	}
	res := e.collect("mde.offboard.result.gone")
	e.publish("mde.offboard.request.gone", map[string]any{"requestId": "failed-1", "machineId": newID(), "attempt": 2}, "gone:failed-1:2")
	got := res.wait(t, 1, 20*time.Second)
	rs := got["gone/failed-1"]
	if len(rs) != 1 || rs[0].Attempt != 2 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("retry of failed-1: %+v, want its own unknown_tenant answer of attempt 2", rs)
	}
}
