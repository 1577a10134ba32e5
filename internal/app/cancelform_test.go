package app

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelSparesALaterRequestWithTheCampaignsIDForm: a cancel withdraws
// the campaign's requests waiting when it is made, and those whose source
// names the campaign; a request that merely has the form of the
// campaign's ids, sent later with a source of its own (a CMDB's
// inc-004711 days after campaign inc), is worked on. A retry of an id of
// the campaign's form is the campaign's whenever sent, whatever its
// source.
func TestCancelSparesALaterRequestWithTheCampaignsIDForm(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 4})
	m := e.tenants["contoso"].machines
	res := e.collect("mde.offboard.result.>")
	send := func(subject, id, machine, source string, attempt int) {
		t.Helper()
		body := map[string]any{"requestId": id, "machineId": machine, "source": source}
		if attempt > 1 {
			body["attempt"] = attempt
		}
		e.publish(subject, body, offboard.RequestMsgID("contoso", id, attempt))
	}
	const bulk, normal = "mde.offboard.request.contoso.bulk", "mde.offboard.request.contoso"
	// Answered before the cancel: a row with a source of its own, for a
	// device Defender does not know.
	missing := strings.Repeat("e", 40)
	send(normal, "inc-000005", missing, "cmdb:CHG0012346", 1)
	eventually(t, 20*time.Second, "inc-000005 answered", func() bool { return len(res.snapshot()["contoso/inc-000005"]) == 1 })
	// Waiting when the cancel is made (bulk paused): one row with the
	// campaign's source, one with a source of its own.
	e.control("pause", "contoso", "bulk")
	eventually(t, 10*time.Second, "contoso's bulk paused", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_tenant_paused", map[string]string{"tenant": "contoso", "priority": "bulk"}) == 1
	})
	send(bulk, "inc-000001", m[0].ID, campaign.Source("inc"), 1)
	send(bulk, "inc-000002", m[1].ID, "cmdb:CHG0012345", 1)
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "inc", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Past campaign.ClockMargin (2 s), within which a request with the
	// campaign's id form is still taken for one of its rows.
	time.Sleep(3 * time.Second)
	send(normal, "inc-004711", m[2].ID, "servicenow:INC004711", 1)
	send(bulk, "inc-000003", m[3].ID, campaign.Source("inc"), 1)
	e.control("resume", "contoso", "bulk")
	got := res.wait(t, 5, 30*time.Second)
	want := map[string]string{
		"inc-000001": offboard.CodeCancelled, // waiting, its source names the campaign
		"inc-000002": offboard.CodeCancelled, // waiting, its id is the campaign's
		"inc-004711": "",                     // later, a source of its own: not the campaign's
		"inc-000003": offboard.CodeCancelled, // later, its source names the campaign
	}
	for id, code := range want {
		rs := got["contoso/"+id]
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want 1", id, len(rs))
			continue
		}
		switch r := rs[0]; {
		case code == "" && r.Outcome != offboard.OutcomeCreated:
			t.Errorf("%s: %s %+v, want created", id, r.Outcome, r.Error)
		case code != "" && (r.Error == nil || r.Error.Code != code):
			t.Errorf("%s: %s %+v, want failed %s", id, r.Outcome, r.Error, code)
		}
	}
	// Retries sent after the cancel of rows with a source of their own:
	// the campaign's still, whenever sent (one first answered cancelled,
	// one answered before the cancel, one whose first attempt the ledger
	// no longer holds, as after --ledger-ttl).
	send(bulk, "inc-000002", m[1].ID, "cmdb:CHG0012345", 2)
	send(normal, "inc-000005", m[0].ID, "cmdb:CHG0012346", 2)
	send(normal, "inc-000006", m[3].ID, "cmdb:CHG0012347", 2)
	for id, n := range map[string]int{"inc-000002": 2, "inc-000005": 2, "inc-000006": 1} {
		eventually(t, 20*time.Second, id+"'s retry answered", func() bool { return len(res.snapshot()["contoso/"+id]) == n })
		if r := res.snapshot()["contoso/"+id][n-1]; r.Attempt != 2 || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Errorf("%s's retry: attempt %d %s %+v, want attempt 2 failed cancelled", id, r.Attempt, r.Outcome, r.Error)
		}
	}
	acts := e.sim.Actions(e.tenants["contoso"].tenantID)
	if len(acts) != 1 || acts[0].MachineID != m[2].ID {
		t.Errorf("%d actions, want inc-004711's alone", len(acts))
	}
}
