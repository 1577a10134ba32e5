package app

import (
	"context"
	"encoding/json"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCallOfAReplicaWithAnotherCommentIsFound: a rolling update changes
// the tenant's comment template. A replica of the old file wrote
// "calling", sent the offboard with the old comment and stopped before
// its answer (cut off at the stop, or killed); the action succeeded
// meanwhile. The request comes back to a replica of the new file, which
// must find that call's action rather than offboard the device again:
// the device keeps one action.
func TestCallOfAReplicaWithAnotherCommentIsFound(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, ackWait: 2 * time.Second, noStart: true,
		extra: "    comment: \"Retired by the new file: {{.RequestID}}\"\n",
		sim:   mdesim.Options{ActionCompleteAfter: time.Millisecond}})
	e.opts.ActionShowsWithin = time.Second
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	const id = "req-1"
	// The old file's comment, as that replica rendered it.
	const oldComment = "Retired by the old file: req-1"
	e.putForNextRequest(t, id, &queue.Entry{State: queue.StateCalling, MachineID: m.ID, Started: time.Now().Add(-time.Second),
		Writer: "replica-of-the-old-file", Comment: oldComment})
	ans := e.app.tenants[0].Client.Offboard(t.Context(), m.ID, oldComment)
	if ans.Class != mde.Success {
		t.Fatalf("offboard: %v", ans.Error())
	}
	first, err := mde.ParseAction(ans.Body)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the action succeeds
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, "contoso:"+id)
	r := c.wait(t, 1, 60*time.Second)["contoso/"+id][0]
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	actions := e.sim.Actions(tt.tenantID)
	if len(actions) != 1 {
		t.Errorf("%d actions for the device, want 1: the old file's call was not found and the device offboarded again", len(actions))
	}
	if r.Outcome != offboard.OutcomeCreated || got.ID != first.ID {
		t.Errorf("result %s with action %q (%+v), want created with the old file's call's action %s", r.Outcome, got.ID, r.Error, first.ID)
	}
}

// TestStoppedCallFoundAfterTheCommentTemplateChanged: the same through a
// real stop. A replica with the default comment template is stopped at
// once (a second signal) while its offboard call's answer is held; the
// action succeeds; the worker comes back with another template. Before,
// it offboarded the device a second time.
func TestStoppedCallFoundAfterTheCommentTemplateChanged(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, ackWait: 2 * time.Second, noStart: true,
		sim: mdesim.Options{ActionCompleteAfter: time.Millisecond}})
	e.opts.ActionShowsWithin = time.Second
	e.start()
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	release := e.sim.HoldAnswers(tt.tenantID, m.ID)
	defer release()
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "req-1", "machineId": m.ID}, "contoso:req-1")
	deadline := time.Now().Add(20 * time.Second)
	for len(e.sim.Actions(tt.tenantID)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no offboard call within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hurried, cancel := context.WithCancel(context.Background())
	cancel()
	e.nc.Close()
	if err := e.app.Stop(hurried); err != nil {
		t.Fatalf("stop: %v", err)
	}
	release()
	e.opts.Tenants.Tenants[0].Resolved.Comment = template.Must(template.New("comment").Parse("Retired by the new file: {{.RequestID}}"))
	e.reg = prometheus.NewRegistry()
	e.opts.Registry = e.reg
	e.start()
	c := e.collect("mde.offboard.result.>")
	r := c.wait(t, 1, 60*time.Second)["contoso/req-1"][0]
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions for the device, want 1: the stopped call's action was not found and the device offboarded again", n)
	}
	if r.Outcome != offboard.OutcomeCreated {
		t.Errorf("result %s %+v, want created with the stopped call's action", r.Outcome, r.Error)
	}
}

// TestRetryFoundAfterTheCommentTemplateChanged: a request whose call's
// answer was lost, and whose action lists did not show within the
// worker's looks, is answered failed (api_error) while the action
// exists; it finishes. The worker comes back with another comment
// template, and the request is retried (attempt 2, as offboardctl dead
// retry sends it). The failed result's entry named no comment: the retry
// looked for the earlier call's action by the new template's, missed it,
// and offboarded the device a second time.
func TestRetryFoundAfterTheCommentTemplateChanged(t *testing.T) {
	t.Parallel()
	const hidden = 3 * time.Second
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: hidden, ActionCompleteAfter: hidden}})
	e.opts.ActionShowsWithin = time.Second
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	body := map[string]any{"requestId": "lost-1", "machineId": tt.machines[0].ID}
	r := e.one(c, "mde.offboard.request.contoso", body)
	if r.Outcome != offboard.OutcomeFailed || len(e.sim.Actions(tt.tenantID)) != 1 {
		t.Fatalf("first attempt: %s %+v with %d actions; want failed with the one action lists did not show yet", r.Outcome, r.Error, len(e.sim.Actions(tt.tenantID)))
	}
	eventually(t, 10*time.Second, "the action shown and finished", func() bool {
		a := e.sim.Actions(tt.tenantID)
		return len(a) == 1 && a[0].Status == mdesim.StatusSucceeded
	})
	c.cc.Stop()
	e.stop()
	e.opts.Tenants.Tenants[0].Resolved.Comment = template.Must(template.New("comment").Parse("Retired by the new file: {{.RequestID}}"))
	e.start()
	c = e.collect("mde.offboard.result.>")
	body["attempt"] = 2
	e.publish("mde.offboard.request.contoso", body, "contoso:lost-1:2")
	eventually(t, 30*time.Second, "the retry's result", func() bool { return len(c.snapshot()["contoso/lost-1"]) == 2 })
	r = c.snapshot()["contoso/lost-1"][1]
	actions := e.sim.Actions(tt.tenantID)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	t.Logf("retry: %s with action %s, %d actions for the device", r.Outcome, got.ID, len(actions))
	if len(actions) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		t.Errorf("retry: %s %+v with %d actions; want created with the first attempt's action, and no second", r.Outcome, r.Error, len(actions))
	}
}

// TestUnknownTenantAnswerKeepsTheCallsComment: a replica of the old
// tenants file was cut off mid-call (its "calling" entry names the old
// comment; the action finished). The request comes back while no replica
// serves the tenant and is answered unknown_tenant over that entry, which
// keeps the call. A replica of the new file serves the tenant again, and
// the request is retried: it must look for the call's action by the
// comment the call went out with. Before, the unknown_tenant answer's
// entry kept the call but not its comment: the retry looked by the new
// file's, missed the action, and offboarded the device a second time.
func TestUnknownTenantAnswerKeepsTheCallsComment(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso", "fabrikam"}, noStart: true,
		sim: mdesim.Options{ActionCompleteAfter: time.Millisecond}})
	e.opts.ActionShowsWithin = time.Second
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "fabrikam")
	e.start() // never serves contoso
	c := e.collect("mde.offboard.result.contoso")
	tt := e.tenants["contoso"]
	const oldComment = "Retired by the old file: cut-1"
	cut := map[string]any{"requestId": "cut-1", "machineId": tt.machines[0].ID}
	e.cutOffMidCallWith(full, tt, cut, oldComment, oldComment)
	eventually(t, 10*time.Second, "the cut off call's action finished", func() bool {
		a := e.sim.Actions(tt.tenantID)
		return len(a) == 1 && a[0].Status == mdesim.StatusSucceeded
	})
	e.answeredUnknown(c, cut, "contoso:cut-1", 1)

	e.startReplicaOf(e.app.NATSURL(), tenantsOnly(full, "contoso")) // the default template
	cut["attempt"] = 2
	e.publish("mde.offboard.request.contoso", cut, "contoso:cut-1:2")
	eventually(t, 30*time.Second, "the retry's result", func() bool { return len(c.snapshot()["contoso/cut-1"]) == 2 })
	r := c.snapshot()["contoso/cut-1"][1]
	actions := e.sim.Actions(tt.tenantID)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	t.Logf("retry: %s with action %s, %d actions for the device", r.Outcome, got.ID, len(actions))
	if len(actions) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		t.Errorf("retry: %s %+v with %d actions; want created with the cut off call's action, and no second", r.Outcome, r.Error, len(actions))
	}
}
