package app

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnknownTenantAnswerKeepsEarlierCalls: a request id whose offboard
// calls may have made an action is answered unknown_tenant while no
// replica serves its tenant: a retry of a request answered failed after a
// call whose answer was lost (its action shown only after the worker's
// looks, then finished), and a request whose "calling" entry is past its
// lease (a replica that died mid-call; its action finished). That answer
// is as the contract says (failed, unknown_tenant, a result-seq message
// id, a dead letter); once the tenant is served again, the next retry of
// each id looks for the earlier call's action and answers created with
// it. Before, the unknown_tenant answer's ledger entry said nothing of
// those calls: the retry went straight to a call, which the API took, a
// second action for the device.
func TestUnknownTenantAnswerKeepsEarlierCalls(t *testing.T) {
	t.Parallel()
	const hidden = 2 * time.Second
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso", "fabrikam"}, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: hidden, ActionCompleteAfter: hidden}})
	e.opts.ActionShowsWithin = time.Second
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "fabrikam")
	e.start() // never serves contoso: answers it unknown_tenant once no replica does
	c := e.collect("mde.offboard.result.contoso")
	tt := e.tenants["contoso"]
	served := e.startReplicaOf(e.app.NATSURL(), tenantsOnly(full, "contoso"))

	lost := map[string]any{"requestId": "lost-1", "machineId": tt.machines[0].ID}
	cut := map[string]any{"requestId": "cut-1", "machineId": tt.machines[1].ID, "comment": "Retired in CMDB (CHG0000001)"}
	e.cutOffMidCall(full, tt, cut)
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.publish("mde.offboard.request.contoso", lost, "contoso:lost-1")
	eventually(t, 20*time.Second, "the first attempt's result", func() bool { return len(c.snapshot()["contoso/lost-1"]) == 1 })
	if r := c.snapshot()["contoso/lost-1"][0]; r.Outcome != offboard.OutcomeFailed {
		t.Fatalf("first attempt: %s %+v; want failed, its action not shown yet", r.Outcome, r.Error)
	}
	// Finished, the actions show in lists (ActionVisibleAfter = ActionCompleteAfter,
	// past ActionShowsWithin), and the API takes a new call for either device.
	eventually(t, 10*time.Second, "both actions shown and finished", func() bool {
		a := e.sim.Actions(tt.tenantID)
		return len(a) == 2 && a[0].Status == mdesim.StatusSucceeded && a[1].Status == mdesim.StatusSucceeded
	})

	if err := served.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	lost["attempt"] = 2
	e.answeredUnknown(c, lost, "contoso:lost-1:2", 2)
	e.answeredUnknown(c, cut, "contoso:cut-1", 1)

	e.startReplicaOf(e.app.NATSURL(), tenantsOnly(full, "contoso"))
	lost["attempt"], cut["attempt"] = 3, 2
	e.publish("mde.offboard.request.contoso", lost, "contoso:lost-1:3")
	e.publish("mde.offboard.request.contoso", cut, "contoso:cut-1:2")
	eventually(t, 30*time.Second, "the retries' results", func() bool {
		s := c.snapshot()
		return len(s["contoso/lost-1"]) == 3 && len(s["contoso/cut-1"]) == 2
	})
	actions := e.sim.Actions(tt.tenantID)
	for i, id := range []string{"lost-1", "cut-1"} {
		rs := c.snapshot()["contoso/"+id]
		r := rs[len(rs)-1]
		var got struct{ ID string }
		_ = json.Unmarshal(r.MachineAction, &got)
		var mine []string
		for _, a := range actions {
			if a.MachineID == tt.machines[i].ID {
				mine = append(mine, a.ID)
			}
		}
		if len(mine) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != mine[0] {
			t.Errorf("%s, retried once served: %s %+v, its device has actions %v; want created with the earlier call's action, and no second", id, r.Outcome, r.Error, mine)
		}
	}
}

// cutOffMidCall leaves the ledger as a replica that died during the
// offboard call of request body (of tenant tt, configured in f) would (a "calling" entry past its lease,
// of a process gone), with the action that call made, finished.
func (e *env) cutOffMidCall(f *config.File, tt *testTenant, body map[string]any) {
	e.t.Helper()
	e.cutOffMidCallWith(f, tt, body, "", body["comment"].(string))
}

// cutOffMidCallWith is cutOffMidCall of a call that went out with comment,
// its "calling" entry naming named ("": none, as an earlier release's).
func (e *env) cutOffMidCallWith(f *config.File, tt *testTenant, body map[string]any, named, comment string) {
	e.t.Helper()
	ledger, err := queue.NewLedger(e.t.Context(), e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	id, machine := body["requestId"].(string), body["machineId"].(string)
	entry := &queue.Entry{State: queue.StateCalling, Seq: 1 << 40, MachineID: machine,
		Started: time.Now().Add(-3 * time.Hour).UTC(), Writer: "gone-" + newID(), Comment: named}
	if err := ledger.Put(e.t.Context(), "contoso", id, nil, entry); err != nil {
		e.t.Fatal(err)
	}
	var tc *config.Tenant
	for _, t := range f.Tenants {
		if t.Name == tt.name {
			tc = t
		}
	}
	if tc == nil {
		e.t.Fatalf("tenant %s not in the tenants file", tt.name)
	}
	cred, err := mde.NewCredential(tc.Credential(), tc.Resolved.Cloud, e.opts.HTTPClient)
	if err != nil {
		e.t.Fatal(err)
	}
	client := mde.NewClient(mde.Options{Cloud: tc.Resolved.Cloud, Credential: cred, HTTPClient: e.opts.HTTPClient})
	if v := client.Offboard(e.t.Context(), machine, comment); v.Class != mde.Success {
		e.t.Fatalf("the cut off call: %v", v.Error())
	}
}

// answeredUnknown publishes body while no replica serves its tenant and
// wants it answered as the contract says of an unconfigured tenant:
// failed, unknown_tenant, under the request's place in the stream, with
// a dead letter; its results are then n.
func (e *env) answeredUnknown(c *collector, body map[string]any, msgID string, n int) {
	e.t.Helper()
	id := body["requestId"].(string)
	ack := e.publish("mde.offboard.request.contoso", body, msgID)
	eventually(e.t, 30*time.Second, id+" answered unknown_tenant", func() bool { return len(c.snapshot()["contoso/"+id]) == n })
	rs := c.snapshot()["contoso/"+id]
	c.mu.Lock()
	ids := append([]string(nil), c.headers["contoso/"+id]...)
	c.mu.Unlock()
	r := rs[n-1]
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeUnknownTenant || r.RequestSeq != ack.Sequence {
		e.t.Errorf("%s: %s %+v (request %d), want failed, unknown_tenant, request %d", id, r.Outcome, r.Error, r.RequestSeq, ack.Sequence)
	}
	if want := ":" + strconv.FormatUint(ack.Sequence, 10); !strings.HasPrefix(ids[n-1], "result-seq:contoso:") || !strings.HasSuffix(ids[n-1], want) {
		e.t.Errorf("%s: message id %q, want result-seq:contoso:<epoch>%s", id, ids[n-1], want)
	}
	// The dead letter is stored beside the result, not before it.
	var dead jetstream.Msg
	eventually(e.t, 10*time.Second, id+"'s dead letter", func() bool {
		for _, m := range e.deadLetters() {
			if m.Headers().Get(offboard.HeaderRequestSeq) == strconv.FormatUint(ack.Sequence, 10) {
				dead = m
				return true
			}
		}
		return false
	})
	if code := dead.Headers().Get(offboard.HeaderErrorCode); code != offboard.CodeUnknownTenant {
		e.t.Errorf("%s: dead letter code %q, want unknown_tenant", id, code)
	}
}
