package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
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

// publishRows publishes rows 1 to n of campaign id at priority prio, each
// for a device of its own, and returns their request ids.
func (e *loopEnv) publishRows(t *testing.T, id string, n int, prio offboard.Priority) map[string]bool {
	t.Helper()
	rows := make(map[string]bool, n)
	for i := range n {
		row := campaign.RequestID(id, i+1)
		e.publishPrio(t, row, prio)
		rows[row] = true
	}
	return rows
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
	e.wantNextPlaceFor(t, "n-1")
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

// TestCancelPassGivesBackTheRoomOfRequestsItReturns: the worker's bound on
// the requests it works on (Options.MaxRequests, 512 by default) is taken
// by the cancel pass's pulls (NextBatchNow with w.room()); a request the
// pass gives back to the stream (giveBack) gives its room back too.
// Here the room is 3: a pass that returns three requests of another
// campaign must not leave the worker with no room for ever.
func TestCancelPassGivesBackTheRoomOfRequestsItReturns(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) { o.MaxRequests = 3 })
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	for i := range 3 {
		e.publishPrio(t, campaign.RequestID("wave2", i+1), offboard.Bulk)
	}
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1") // wave2's three rows go back to the stream
	time.Sleep(time.Second)
	e.clock.Advance(time.Hour + time.Second)
	select {
	case r := <-e.results:
		if r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s %+v, want a wave2 row created", r.RequestID, r.Outcome, r.Error)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result once the quota freed: the rows the cancel pass returned kept their room (MaxRequests), the loop waits for room for ever")
	}
}

// TestCancelPassDoesNotLetBulkOvertakeNormal: CONTRACT.md "bulk
// never delays normal priority within a tenant". A normal request waiting
// for the quota is taken and returned by a cancel pass (of a campaign it
// has nothing to do with); a bulk request published meanwhile must not
// take the quota's next place ahead of it.
func TestCancelPassDoesNotLetBulkOvertakeNormal(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	e.publish(t, "n-1")     // normal, waits for the quota
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1") // the pass takes n-1 and returns it
	time.Sleep(500 * time.Millisecond)
	e.publishPrio(t, "b-1", offboard.Bulk)
	time.Sleep(300 * time.Millisecond)
	e.wantNextPlaceFor(t, "n-1")
}

// TestCancelPassDoesNotHoldBackRequestsOnceQuotaFrees: a normal request
// waiting for the quota is taken and returned by a cancel pass for a
// campaign it has nothing to do with. When the quota frees a moment later
// (at full pace a place frees every 0.6 s with 100/1m), the request gets
// it at once, not after some delay with the quota unused.
func TestCancelPassDoesNotHoldBackRequestsOnceQuotaFrees(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	e.publish(t, "n-1")     // waits for the quota
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1")
	time.Sleep(300 * time.Millisecond)
	e.clock.Advance(time.Hour + time.Second) // the place frees
	freed := time.Now()
	select {
	case r := <-e.results:
		if r.RequestID != "n-1" {
			t.Fatalf("result %s %s, want n-1", r.RequestID, r.Outcome)
		}
		if d := time.Since(freed); d > 2*time.Second {
			t.Errorf("n-1 answered %v after the quota freed: set aside by a cancel pass of another campaign, the quota unused meanwhile", d.Round(100*time.Millisecond))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result once the quota freed")
	}
}

// wantNextPlaceFor frees the hour's one place and checks that the normal
// request id gets it (bulk must not delay normal).
func (e *loopEnv) wantNextPlaceFor(t *testing.T, id string) {
	t.Helper()
	e.clock.Advance(time.Hour + time.Second)
	select {
	case r := <-e.results:
		if r.RequestID != id {
			t.Errorf("the hour's next call went to %s (%s); want the normal request %s, waiting before it (bulk must not delay normal)", r.RequestID, r.Outcome, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result once the quota freed")
	}
}

// TestCancelReachesRequestWaitingToEnterItsCall: a request whose call's
// entry in the quota journal waits (a 429 of another request pausing the
// tenant after the request took its permit, here for an hour) has that
// wait ended by a cancel of its campaign, as its wait for the permit is:
// answered cancelled at once, no call. Before, it was answered only when
// the pause was over.
func TestCancelReachesRequestWaitingToEnterItsCall(t *testing.T) {
	t.Parallel()
	var quota, budget *limiter.Shared
	e := setupLoopOpts(t, `["100/1m"]`, "    guards:\n      budget: \"10/1h\"\n", RetryPolicy{}, func(o *Options) {
		qj, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		quota = limiter.NewShared(limiter.SharedOptions{Journal: qj, Clock: o.Clock, Lease: time.Minute,
			Margin: time.Second, Wall: clockwork.NewRealClock()})
		followJournal(t, o.JS, o.Settings.Subjects, quota, false)
		bj, err := queue.NewBudgetJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		clock := o.Clock
		pause := func() { quota.Tenant("contoso").Pause(clock.Now(), time.Hour) }
		budget = limiter.NewShared(limiter.SharedOptions{Journal: &onReserve{Journal: bj, hook: pause}, Clock: o.Clock, Lease: time.Minute,
			Margin: time.Second, Wall: clockwork.NewRealClock()})
		followJournal(t, o.JS, o.Settings.Subjects, budget, true)
		o.Shared, o.Budget = quota, budget
	})
	id := campaign.RequestID("wave1", 1)
	e.publishPrio(t, id, offboard.Bulk)
	time.Sleep(time.Second) // its slot taken, its call's entry waiting for the pause
	e.cancelCampaign(t, "wave1")
	select {
	case r := <-e.results:
		if r.RequestID != id || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Fatalf("result %s %s %+v, want %s cancelled", r.RequestID, r.Outcome, r.Error, id)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s not answered cancelled 10s after the cancel: its call's entry waits for the pause (an hour)", id)
	}
	for _, c := range e.sim.Calls() {
		if c.API == mde.APIOffboard {
			t.Errorf("an offboard call went out: %+v", c)
		}
	}
}

// TestCancelPassReturnsRequestsWithoutALookForAnAction: a request a
// cancel pass takes and returns to the stream (of a campaign it has
// nothing to do with) never reached its call. Delivered again, it found
// no ledger entry for its id, and was taken for one whose earlier
// delivery's entry was gone: it read the tenant's results and listed the
// device's actions, a few times with backoffs, before its call. It is
// called at once, with no list of the device's actions.
func TestCancelPassReturnsRequestsWithoutALookForAnAction(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")                  // the hour's only call is spent
	e.publishPrio(t, "n-1", offboard.Normal) // another device; waits for the quota
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1") // the pass takes n-1 and returns it
	time.Sleep(300 * time.Millisecond)
	e.clock.Advance(time.Hour + time.Second) // the place frees
	select {
	case r := <-e.results:
		if r.RequestID != "n-1" || r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s, want n-1 created", r.RequestID, r.Outcome)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result once the quota freed")
	}
	lists := 0
	for _, c := range e.sim.Calls() {
		if c.API == "machineactions" {
			lists++
		}
	}
	if lists != 0 {
		t.Errorf("%d lists of the device's actions for a request returned before its call, want 0", lists)
	}
}
