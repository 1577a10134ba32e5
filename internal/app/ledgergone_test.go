package app

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// purgeLedger purges the ledger bucket, as an operator may, or as its
// entries expire.
func (e *env) purgeLedger() {
	e.t.Helper()
	ledger, err := e.js.Stream(e.t.Context(), "KV_"+offboard.BucketLedger)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := ledger.Purge(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
}

// resultsOn counts the messages on subject in the results stream.
func (e *env) resultsOn(subject string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), offboard.StreamResults)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// leftAfterALostAnswer publishes a request of contoso's device on
// subject, with fields beside its id and machineId: its offboard call
// acts and its answer is lost (504), and the look for the action it made
// is refused refused times (a delivery's look tries 6 times, RetryPolicy.
// Attempts). It returns the device once the first delivery's look is
// given up and the request left for a later look.
func (e *env) leftAfterALostAnswer(subject, id string, fields map[string]any, refused int) mdesim.Machine {
	e.t.Helper()
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.sim.InjectStatus(tt.tenantID, "machineactions", 503, "", "", refused, 0)
	req := map[string]any{"requestId": id, "machineId": m.ID}
	maps.Copy(req, fields)
	e.publish(subject, req, "contoso:"+id)
	eventually(e.t, 20*time.Second, "the first look for the action given up", func() bool { return e.apiCalls("machineactions") == 6 })
	return m
}

// deliverWithoutAnAck has contoso's normal consumer deliver its next
// request to the test, which never acks it, as to a worker that died with
// it: it comes back after the ack wait, delivered twice.
func (e *env) deliverWithoutAnAck() {
	e.t.Helper()
	cons, err := e.js.Consumer(e.t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		e.t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 1 {
		e.t.Fatalf("delivered %d requests, want 1", n)
	}
}

// createdWithTheAction checks that rs, a request's results, are one,
// created with the only action contoso's device has, made by m's one
// offboard call.
func (e *env) createdWithTheAction(rs []offboard.Result, m mdesim.Machine) {
	e.t.Helper()
	tt := e.tenants["contoso"]
	if n := e.offboardCalls(tt.tenantID, m.ID); n != 1 {
		e.t.Errorf("%d offboard calls for the device, want 1", n)
	}
	actions := e.sim.Actions(tt.tenantID)
	if len(rs) != 1 || len(actions) != 1 {
		e.t.Fatalf("%d results, %d actions; want one of each", len(rs), len(actions))
	}
	var got struct{ ID string }
	_ = json.Unmarshal(rs[0].MachineAction, &got)
	if rs[0].Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		e.t.Errorf("result %s (%+v) with action %q, want created with %s", rs[0].Outcome, rs[0].Error, got.ID, actions[0].ID)
	}
}

// TestLedgerPurgedWhileTheRequestWasLeft: a request's offboard call acts,
// its answer is lost (504), and the device's actions cannot be listed to
// find the action: the request goes back to the stream to look for it
// later. Meanwhile its ledger entry is gone (the bucket purged, the entry
// deleted or expired). Delivered again, it finds no entry. Before, it was
// taken for a new request and the device was called a second time (the
// API refused it: already_pending). A request delivered again that finds
// no entry now looks for the action of an earlier delivery's call first,
// and answers created with it.
func TestLedgerPurgedWhileTheRequestWasLeft(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	results := e.collect("mde.offboard.result.>")
	m := e.leftAfterALostAnswer("mde.offboard.request.contoso", "left-1", nil, 6)
	e.purgeLedger()
	results.wait(t, 1, 30*time.Second)
	eventually(t, 30*time.Second, "request removed from the stream", func() bool {
		return e.streamMsgs(offboard.StreamRequests) == 0
	})
	e.createdWithTheAction(results.snapshot()["contoso/left-1"], m)
	if n := e.resultsOn("mde.offboard.result.contoso"); n != 1 {
		t.Errorf("%d results stored, want 1", n)
	}
}

// TestLedgerPurgedBeforeTheAck: a worker stored a request's result and
// published it, and died before its ack; the ledger entry is gone since
// (the bucket purged, the entry deleted or expired). The request is
// delivered again (NATS outlived the worker) and finds no entry. Before,
// it was taken for a new request: the device was called a second time,
// and the ledger stored the API's refusal (already_pending) where the
// published result says created. Now the result published for the
// request is found in the results stream, stored in the ledger, and is
// the answer: no call.
func TestLedgerPurgedBeforeTheAck(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, 1)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: 2 * time.Second, noStart: true})
	e.opts.NATSURL = srv.URLs()
	e.start()
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	// The dead worker's call, with the comment it sends.
	action := e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: "acked-1", Tenant: "contoso", MachineID: m.ID})
	e.stop() // its streams and consumers stay on the server
	e.connect(srv.URLs())
	ctx := t.Context()

	pub := e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "acked-1", "machineId": m.ID}, "contoso:acked-1")
	e.deliverWithoutAnAck()
	now := time.Now().UTC()
	res := offboard.Result{RequestID: "acked-1", Tenant: "contoso", MachineID: m.ID, Outcome: offboard.OutcomeCreated,
		MachineAction: action.Raw, Attempts: 1, Attempt: 1, RequestSeq: pub.Sequence, Priority: offboard.Normal,
		ReceivedAt: now, CompletedAt: now}
	e.publish("mde.offboard.result.contoso", res, offboard.ResultMsgID("contoso", "acked-1", 1))
	// Another request answered since: the request's result is not the
	// tenant's last.
	other := res
	other.RequestID, other.MachineAction, other.RequestSeq = "other-1", nil, pub.Sequence+1
	e.publish("mde.offboard.result.contoso", other, offboard.ResultMsgID("contoso", "other-1", 1))

	e.start()
	eventually(t, 30*time.Second, "request removed from the stream", func() bool {
		return e.streamMsgs(offboard.StreamRequests) == 0
	})
	if n := e.offboardCalls(tt.tenantID, m.ID); n != 1 {
		t.Errorf("%d offboard calls for the device, want only the dead worker's", n)
	}
	if n := e.resultsOn("mde.offboard.result.contoso"); n != 2 {
		t.Errorf("%d results stored, want the dead worker's and the other request's", n)
	}
	ledger, err := queue.NewLedger(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := ledger.Get(ctx, "contoso", "acked-1")
	if err != nil || entry == nil || entry.State != queue.StateDone {
		t.Fatalf("ledger entry %+v (%v), want the result", entry, err)
	}
	var stored offboard.Result
	if err := json.Unmarshal(entry.Result, &stored); err != nil || stored.Outcome != offboard.OutcomeCreated {
		t.Errorf("ledger holds %s (%v), want the published created", stored.Outcome, err)
	}
}

// TestLedgerPurgedAndTheLookRefusedAgain: as
// TestLedgerPurgedWhileTheRequestWasLeft, and the next delivery's look
// for the earlier call's action is refused too: it goes back to the
// stream as well. Before, it left the claim it wrote over the missing
// entry, which read to the delivery after it as a claim of its own
// message, never called for: that one took the request for a new one
// and called the device a second time. The claim is taken back as the
// request leaves, and the delivery after it looks for the action again.
func TestLedgerPurgedAndTheLookRefusedAgain(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	results := e.collect("mde.offboard.result.>")
	// The first two deliveries' looks (6 attempts each) fail.
	m := e.leftAfterALostAnswer("mde.offboard.request.contoso", "left-2", nil, 12)
	e.purgeLedger()
	results.wait(t, 1, 40*time.Second)
	eventually(t, 30*time.Second, "request removed from the stream", func() bool {
		return e.streamMsgs(offboard.StreamRequests) == 0
	})
	if n := e.apiCalls("machineactions"); n < 13 {
		t.Errorf("%d action lists, want the two deliveries' refused looks and one more", n)
	}
	e.createdWithTheAction(results.snapshot()["contoso/left-2"], m)
}

// TestLedgerPurgedWithoutAReadOfTheResults: as
// TestLedgerPurgedWhileTheRequestWasLeft, for a worker whose NATS user
// may not read the results stream (a --no-setup deployment narrowed to
// what an earlier release needed). The look for a published result fails
// as if NATS did not answer; before, the request went back to the stream
// at each delivery and was never answered. It now goes on to the look
// for the earlier call's action, which answers it.
func TestLedgerPurgedWithoutAReadOfTheResults(t *testing.T) {
	t.Parallel()
	results := "MDE_OFFBOARD_RESULTS"
	url := natstest.StartWithUsers(t, &server.User{Username: "admin", Password: "a"}, &server.User{Username: "worker", Password: "w", Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{">"},
			Deny: []string{
				"$JS.API.CONSUMER.CREATE." + results, "$JS.API.CONSUMER.CREATE." + results + ".>",
				"$JS.API.STREAM.MSG.GET." + results, "$JS.API.DIRECT.GET." + results, "$JS.API.DIRECT.GET." + results + ".>",
			},
		},
	}})
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	e.opts.NATSURL = strings.Replace(url, "nats://", "nats://worker:w@", 1)
	e.start()
	e.nc.Close()
	e.connect(strings.Replace(url, "nats://", "nats://admin:a@", 1)) // the test reads what the worker may not
	collected := e.collect("mde.offboard.result.>")
	m := e.leftAfterALostAnswer("mde.offboard.request.contoso", "left-3", nil, 6)
	e.purgeLedger()
	purged := time.Now()
	// The refused reads get no answer: each waits out its bound, that
	// of one round trip (queue.StepTimeout), not that of a result's
	// store (30 s), which the request would hold its slot for at each
	// delivery.
	collected.wait(t, 1, 90*time.Second)
	if d := time.Since(purged); d > 15*time.Second {
		t.Errorf("answered %v after the purge, want within 15 s (the 5 s before its redelivery, a refused read, the look)", d.Round(100*time.Millisecond))
	}
	e.createdWithTheAction(collected.snapshot()["contoso/left-3"], m)
}

// TestLedgerPurgedAndTheCampaignCancelled: as
// TestLedgerPurgedWhileTheRequestWasLeft, for a campaign's request whose
// campaign an operator cancels while it is left. Before, the delivery
// that found no entry was answered cancelled before it looked for the
// earlier call's action: its result hid the action that call created.
// It looks first, and answers created with the action it finds.
func TestLedgerPurgedAndTheCampaignCancelled(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	results := e.collect("mde.offboard.result.>")
	id := campaign.RequestID("wave1", 1)
	m := e.leftAfterALostAnswer("mde.offboard.request.contoso.bulk", id, map[string]any{"source": campaign.Source("wave1")}, 6)
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.purgeLedger()
	results.wait(t, 1, 30*time.Second)
	e.createdWithTheAction(results.snapshot()["contoso/"+id], m)
}

// TestRedeliveryWithoutAnEntryLooksOnce: a request delivered and never
// worked on (fetched by a worker that died, or lost at a NATS outage) is
// delivered again with no ledger entry, as one whose entry is gone after
// a call would be. No entry says a call went out: the action is looked
// for once, not a few times with backoffs as after a call known to have
// gone out less than a minute ago (ActionShowsWithin). Before, each such
// request stored less than a minute ago listed the device's actions 4
// times and waited 1+2+4 s before its call: the last results after a
// NATS outage came seconds later.
func TestRedeliveryWithoutAnEntryLooksOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, 1)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: 2 * time.Second, noStart: true})
	e.opts.NATSURL = srv.URLs()
	e.start()
	m := e.tenants["contoso"].machines[0]
	e.stop() // its streams and consumers stay on the server
	e.connect(srv.URLs())
	results := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "lost-1", "machineId": m.ID}, "contoso:lost-1")
	e.deliverWithoutAnAck()
	began := time.Now()
	e.start()
	rs := results.wait(t, 1, 30*time.Second)["contoso/lost-1"]
	t.Logf("answered %v after the restart", time.Since(began).Round(100*time.Millisecond))
	if n := e.apiCalls("machineactions"); n != 1 {
		t.Errorf("%d action lists before the call, want 1", n)
	}
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results %+v, want one created", rs)
	}
}

// TestRequestLeftBeforeItsCallIsNotLookedFor: a request's "calling" entry
// cannot be written (the ledger does not answer: here its bucket is
// gone for a moment, as in an outage), so no call goes out and the
// request is left. Its next delivery finds no entry, as one whose entry
// is gone after a call would, but this process left it with no call sent:
// it is worked on as new, without a read of the tenant's results or a
// list of the device's actions. Before, each such request looked, and
// after a NATS outage the drain's last results came seconds later.
func TestRequestLeftBeforeItsCallIsNotLookedFor(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	results := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	ctx := t.Context()
	if err := e.js.DeleteKeyValue(ctx, offboard.BucketLedger); err != nil {
		t.Fatal(err)
	}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "uncalled-1", "machineId": m.ID}, "contoso:uncalled-1")
	cons, err := e.js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the request left", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumRedelivered > 0
	})
	if _, err := e.js.CreateKeyValue(ctx, queue.Settings{}.Ledger()); err != nil {
		t.Fatal(err)
	}
	rs := results.wait(t, 1, 30*time.Second)["contoso/uncalled-1"]
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results %+v, want one created", rs)
	}
	if n := e.offboardCalls(e.tenants["contoso"].tenantID, m.ID); n != 1 {
		t.Errorf("%d offboard calls, want 1", n)
	}
	if n := e.apiCalls("machineactions"); n != 0 {
		t.Errorf("%d action lists, want none: this process left the request before any call", n)
	}
}
