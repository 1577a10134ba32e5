package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// publishPrio publishes a request of contoso for a new device at the given
// priority.
func (e *loopEnv) publishPrio(t *testing.T, id string, prio offboard.Priority) {
	t.Helper()
	machine := mdesim.NewMachineID()
	e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: machine, ComputerDNSName: id + ".contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
	data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": machine})
	m := nats.NewMsg(offboard.Subjects{}.Request("contoso", prio))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "contoso:"+id)
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// TestCancelDoesNotLetBulkOvertakeNormal: CONTRACT.md "bulk never delays
// normal priority within a tenant". With the quota spent, a cancel of one
// campaign makes the loop pull the bulk backlog without waiting for the
// quota (fetchWithdrawn); the other campaign's bulk requests pulled along
// go back to the stream rather than hold the in-flight slots waiting for
// the quota, so a normal request published next gets the next place.
func TestCancelDoesNotLetBulkOvertakeNormal(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	for i := range 2 {
		e.publishPrio(t, campaign.RequestID("wave1", i+1), offboard.Bulk)
	}
	for i := range 4 {
		e.publishPrio(t, campaign.RequestID("wave2", i+1), offboard.Bulk)
	}
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1")
	for range 2 {
		select {
		case r := <-e.results:
			if r.Error == nil || r.Error.Code != offboard.CodeCancelled {
				t.Fatalf("result %s %s %+v, want a wave1 row cancelled", r.RequestID, r.Outcome, r.Error)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("cancelled rows not answered")
		}
	}
	time.Sleep(500 * time.Millisecond)
	e.publishPrio(t, "n-1", offboard.Normal)
	time.Sleep(500 * time.Millisecond)
	e.clock.Advance(time.Hour + time.Second)
	select {
	case r := <-e.results:
		if r.RequestID != "n-1" {
			t.Errorf("the hour's next call went to bulk %s (%s); want the normal request n-1 (bulk must not delay normal)", r.RequestID, r.Outcome)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result once the quota freed")
	}
}

// TestCancelReachesRequestWaitingForAGuardRead: commit "a
// campaign's cancel no longer waits for the tenant's quota": a request
// already waiting in the worker has its wait ended by the cancel (the
// contract has a control take effect within a second). A guarded tenant
// reads the device before the offboard call, under the machines quota; a
// campaign's request waiting for that read (the hour's one read spent) is
// answered cancelled at once, and spends no read.
func TestCancelReachesRequestWaitingForAGuardRead(t *testing.T) {
	t.Parallel()
	e := setupLoopWith(t, `["100/1m"]`, "      machines: [\"1/1h\"]\n    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n", RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // its guard read spent the hour's one read
	id := campaign.RequestID("wave1", 1)
	e.publishPrio(t, id, offboard.Bulk)
	time.Sleep(time.Second) // taken, waiting for its read
	e.cancelCampaign(t, "wave1")
	select {
	case r := <-e.results:
		if r.RequestID != id || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Fatalf("result %s %s %+v, want %s cancelled", r.RequestID, r.Outcome, r.Error, id)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s not answered cancelled 10s after the cancel: it waits for the machines quota (an hour)", id)
	}
	e.clock.Advance(time.Hour + time.Second)
	select {
	case r := <-e.results:
		t.Logf("after the hour: %s %s %+v", r.RequestID, r.Outcome, r.Error)
	case <-time.After(10 * time.Second):
	}
	reads := 0
	for _, c := range e.sim.Calls() {
		if c.API == "machines" {
			reads++
		}
	}
	if reads != 1 {
		t.Errorf("%d device reads, want r-1's alone (none for the cancelled request)", reads)
	}
}

// TestStopAfterCancelDoesNotWaitForQuota: requests that wait for quota
// stay in the stream, so a stop does not wait for them; a budget wait in
// the worker ends when fetching stops (reserveBudget: "the request goes
// back to the stream rather than hold the shutdown"). After a cancel, a
// request pulled along and waiting in the worker for the quota
// (offboardPermit) goes back to the stream when fetching stops: Stop
// returns at once rather than at its deadline.
func TestStopAfterCancelDoesNotWaitForQuota(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	e.publishPrio(t, campaign.RequestID("wave1", 1), offboard.Bulk)
	e.publishPrio(t, campaign.RequestID("wave2", 1), offboard.Bulk)
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1")
	select {
	case <-e.results:
	case <-time.After(20 * time.Second):
		t.Fatal("cancelled row not answered")
	}
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.w.Stop(ctx); err != nil {
		t.Errorf("Stop after %v: %v (a request of wave2 pulled along by the cancel waits in the worker for the quota)", time.Since(start).Round(time.Second), err)
	}
}

// cancelCampaign marks contoso's campaign name cancelled, as offboardctl
// campaign cancel does.
func (e *loopEnv) cancelCampaign(t *testing.T, name string) {
	t.Helper()
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", name, campaign.Mark{Cancelled: true, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestCancelReachesRowsBehindAnotherCampaign: with the quota spent, a
// cancelled campaign's rows behind another campaign's bulk rows (more
// than a fetch's worth), or mixed with them, are answered cancelled
// without waiting for the quota: the other rows are set aside a moment
// rather than stop the pass.
func TestCancelReachesRowsBehindAnotherCampaign(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		before, mixed int
	}{{"behind", 100, 0}, {"mixed", 0, 100}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
			e.publish(t, "r-1")
			e.wantCreated(t, "r-1") // the hour's only call is spent
			for i := range tc.before {
				e.publishPrio(t, campaign.RequestID("wave2", i+1), offboard.Bulk)
			}
			cancelled := 3
			for i := range tc.mixed {
				e.publishPrio(t, campaign.RequestID("wave2", i+1), offboard.Bulk)
				e.publishPrio(t, campaign.RequestID("wave1", i+1), offboard.Bulk)
				cancelled = tc.mixed
			}
			if tc.mixed == 0 {
				for i := range cancelled {
					e.publishPrio(t, campaign.RequestID("wave1", i+1), offboard.Bulk)
				}
			}
			time.Sleep(300 * time.Millisecond)
			e.cancelCampaign(t, "wave1")
			for got := 0; got < cancelled; got++ {
				select {
				case r := <-e.results:
					if r.Error == nil || r.Error.Code != offboard.CodeCancelled {
						t.Fatalf("result %s %s %+v, want a wave1 row cancelled", r.RequestID, r.Outcome, r.Error)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%d of wave1's %d rows answered cancelled: the others wait for the quota (an hour)", got, cancelled)
				}
			}
		})
	}
}
