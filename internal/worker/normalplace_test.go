package worker

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// publishByName publishes request id of contoso at prio for a new device
// of the simulator, named id.contoso.local, by that name.
func (e *loopEnv) publishByName(t *testing.T, id string, prio offboard.Priority) {
	t.Helper()
	name := id + ".contoso.local"
	e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: mdesim.NewMachineID(), ComputerDNSName: name,
		OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
	data, _ := json.Marshal(map[string]any{"requestId": id, "computerDnsName": name})
	m := nats.NewMsg(offboard.Subjects{}.Request("contoso", prio))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "contoso:"+id)
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// TestBulkWaitingLongLeavesAPlaceForNormal: CONTRACT.md "bulk never delays
// normal priority within a tenant". Bulk requests by name wait for the
// machines quota (the hour's one read spent) with the offboard quota free:
// they hold no more than maxInFlight-1 of the tenant's places, so a normal
// request by machine id, which needs no read, is answered at once rather
// than after the hour.
func TestBulkWaitingLongLeavesAPlaceForNormal(t *testing.T) {
	t.Parallel()
	e := setupLoopWith(t, `["100/1m"]`, "      machines: [\"1/1h\"]\n", RetryPolicy{})
	e.publishByName(t, "n-0", offboard.Normal)
	e.wantCreated(t, "n-0") // its lookup spent the hour's one read
	for i := range 6 {
		e.publishByName(t, fmt.Sprintf("b-%d", i), offboard.Bulk)
	}
	time.Sleep(500 * time.Millisecond) // taken, waiting for the read
	e.publish(t, "n-1")
	e.wantCreated(t, "n-1")
	e.clock.Advance(time.Hour + time.Second)
	got := map[string]bool{}
	for range 6 {
		r := e.nextResult(t, "a bulk request")
		if r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s %+v, want created", r.RequestID, r.Outcome, r.Error)
		}
		got[r.RequestID] = true
		e.clock.Advance(time.Hour + time.Second) // the next read
	}
	if len(got) != 6 {
		t.Errorf("bulk results %v, want b-0 to b-5 once each", got)
	}
}

// TestBulkAloneRunsOnTheTenantsOtherPlaces: with no normal request
// waiting, bulk requests go on as their places free; the loop waiting
// for a normal request on the last place wakes when a bulk one ends.
func TestBulkAloneRunsOnTheTenantsOtherPlaces(t *testing.T) {
	t.Parallel()
	e := setupLoopWith(t, `["100/1m"]`, "    maxInFlight: 2\n", RetryPolicy{})
	const n = 8
	for i := range n {
		e.publishPrio(t, fmt.Sprintf("b-%d", i), offboard.Bulk)
	}
	for range n {
		if r := e.nextResult(t, "a bulk request"); r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s %+v, want created", r.RequestID, r.Outcome, r.Error)
		}
	}
}

// TestBulkHoldingItsPlacesAsksNoCounts: while bulk requests hold every
// bulk place and more wait in the stream, the loop waits for a normal
// request on the last place; its safety polls pull the normal consumer,
// and find it empty, without reading both consumers' counts at every
// poll: the bulk consumer is known to hold requests, so the tenant is
// busy, and a thousand tenants in a bulk run would make those counts the
// server's busiest API (queue.Source).
func TestBulkHoldingItsPlacesAsksNoCounts(t *testing.T) {
	t.Parallel()
	const poll = 50 * time.Millisecond
	e := setupLoopOpts(t, `["100/1m"]`, "      machines: [\"1/1h\"]\n", RetryPolicy{}, func(o *Options) { o.Poll = poll })
	e.publishByName(t, "n-0", offboard.Normal)
	e.wantCreated(t, "n-0") // its lookup spent the hour's one read
	for i := range 6 {
		e.publishByName(t, fmt.Sprintf("b-%d", i), offboard.Bulk)
	}
	e.waitInFlight(t, 3) // the bulk places, held waiting for the read
	var infos atomic.Int64
	sub, err := e.js.Conn().Subscribe("$JS.API.CONSUMER.INFO.>", func(*nats.Msg) { infos.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * poll) // twenty safety polls
	if n := infos.Load(); n != 0 {
		t.Errorf("%d consumer info requests in 20 safety polls while the bulk consumer held requests, want 0", n)
	}
	e.publish(t, "n-1") // the last place still serves a normal request
	e.wantCreated(t, "n-1")
}

// waitInFlight waits, 10 s at most, until contoso has n requests in
// flight.
func (e *loopEnv) waitInFlight(t *testing.T, n float64) {
	t.Helper()
	inFlight := e.w.m.InFlight.WithLabelValues("contoso")
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(inFlight) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%v requests in flight, want %v", testutil.ToFloat64(inFlight), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCancelReachesRowsBehindHeldBulkPlaces: a campaign's cancel ends
// the loop's wait for a bulk place as it ends its wait for quota: the
// cancelled rows need no place. wave2's rows by name hold every bulk
// place, waiting for the machines quota's next hour; wave1's rows wait in
// the stream behind them, and are answered cancelled as the cancel
// lands, not when a wave2 row ends.
func TestCancelReachesRowsBehindHeldBulkPlaces(t *testing.T) {
	t.Parallel()
	e := setupLoopWith(t, `["100/1m"]`, "      machines: [\"1/1h\"]\n", RetryPolicy{})
	e.publishByName(t, "n-0", offboard.Normal)
	e.wantCreated(t, "n-0") // its lookup spent the hour's one read
	for i := range 3 {
		e.publishByName(t, campaign.RequestID("wave2", i+1), offboard.Bulk)
	}
	e.waitInFlight(t, 3)
	for i := range 3 {
		e.publishPrio(t, campaign.RequestID("wave1", i+1), offboard.Bulk)
	}
	e.cancelCampaign(t, "wave1")
	for i := range 3 {
		select {
		case r := <-e.results:
			if r.Error == nil || r.Error.Code != offboard.CodeCancelled || !strings.HasPrefix(r.RequestID, "wave1-") {
				t.Fatalf("result %s %s %+v, want a wave1 row cancelled", r.RequestID, r.Outcome, r.Error)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 3 wave1 rows answered 10 s after the cancel: the others wait for a bulk place", i)
		}
	}
	e.publish(t, "n-1") // the last place still serves a normal request
	e.wantCreated(t, "n-1")
}
