package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignCancelAnswersRequestsBehindAPause: a cancel of a campaign
// whose requests wait behind an operator's pause has them answered
// cancelled while the pause holds. Before, the worker left a paused
// priority's requests alone, cancelled ones too, and the cancel said
// they would be answered once the priority was resumed
// (`offboardctl resume`), which called nothing for them then either.
func TestCampaignCancelAnswersRequestsBehindAPause(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "bulk"); code != exitOK {
		t.Fatalf("pause: exit %d %s", code, errs)
	}
	if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
		offboard.Request{RequestID: "camp-000001", MachineID: e.machines[0].ID, Source: "campaign:camp"}); err != nil {
		t.Fatal(err)
	}
	code, out, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "camp")
	if code != exitOK || strings.Contains(out, "resume") || strings.Count(out, "\n") != 1 {
		t.Errorf("campaign cancel: exit %d, stdout %q (want one line, no resume), stderr %q", code, out, errs)
	}
	e.waitFor("the paused request answered", 10*time.Second, func() bool { return e.requestsWaiting() == 0 })
	rs := e.results()
	if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeCancelled {
		t.Errorf("results %+v, want camp-000001 cancelled", rs)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}

// A cancel counts the campaign's results once its mark is set, and the
// worker answers waiting requests cancelled as soon as it reads the mark:
// "answered so far" then held requests the cancel itself answered. It
// says how many of them are cancelled. No worker runs: the request left
// waits.
func TestCampaignCancelSaysHowManyAnsweredAreCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	e.stopWorker() // it withdraws its announcement
	for i, m := range e.machines[:2] {
		id := fmt.Sprintf("camp-%06d", i+1)
		if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
			offboard.Request{RequestID: id, MachineID: m.ID, Source: "campaign:camp"}); err != nil {
			t.Fatal(err)
		}
	}
	// Row 1 answered cancelled, as a worker that read the mark first does.
	publishRaw(t, e.js, offboard.Subjects{}.Result(tenant), "result:"+tenant+":camp-000001",
		`{"requestId":"camp-000001","tenant":"`+tenant+`","outcome":"failed","attempt":1,"error":{"code":"cancelled","message":"campaign cancelled"}}`)
	code, out, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "camp")
	want := "1 request waiting will be answered cancelled; no worker has announced the tenant: none is answered before one runs; 1 answered so far, 1 of them cancelled\n"
	if code != exitOK || !strings.HasSuffix(out, want) {
		t.Errorf("campaign cancel: exit %d, stdout %q (want it to end %q), stderr %q", code, out, want, errs)
	}
}

// TestCampaignCancelWithNothingWaiting: a cancel of a campaign none of
// whose requests waits (all answered, or taken by a worker as the mark
// landed) said "0 requests waiting will be answered cancelled", which
// read as a cancel that did nothing.
func TestCampaignCancelWithNothingWaiting(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	res := offboard.Result{RequestID: "wave-000001", MachineID: strings.Repeat("a", 40), Tenant: "contoso",
		Outcome: offboard.OutcomeFailed, Error: &offboard.ResultError{Code: offboard.CodeCancelled, Message: "cancelled"}, Attempt: 1}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "mde.offboard.result.contoso", data); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", "contoso", "--name", "wave")
	want := "campaign wave of tenant contoso cancelled: none of its requests waits now; 1 answered so far, 1 of them cancelled\n"
	if code != exitOK || out != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
}
