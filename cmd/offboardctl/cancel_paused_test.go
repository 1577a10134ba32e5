package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A cancel of a campaign whose requests wait behind an operator's pause
// says that they are answered once the priority is resumed, and how: a
// paused priority's requests are left alone, cancelled ones too, and the
// cancel said they "will be answered cancelled" while the run went on
// waiting for them.
func TestCampaignCancelBehindAPauseSaysToResume(t *testing.T) {
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
	want := "1 request waiting will be answered cancelled once bulk is resumed (offboardctl resume contoso --priority bulk); 0 answered so far\n"
	if code != exitOK || !strings.HasSuffix(out, want) || strings.Count(out, "\n") != 1 {
		t.Errorf("campaign cancel: exit %d, stdout %q (want it to end %q), stderr %q", code, out, want, errs)
	}
	if e.requestsWaiting() != 1 {
		t.Errorf("%d requests waiting; want the paused one", e.requestsWaiting())
	}
}

// A cancel counts the campaign's results once its mark is set, and the
// worker answers waiting requests cancelled as soon as it reads the mark:
// "answered so far" then held requests the cancel itself answered. It
// says how many of them are cancelled.
func TestCampaignCancelSaysHowManyAnsweredAreCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "bulk"); code != exitOK {
		t.Fatalf("pause: exit %d %s", code, errs)
	}
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
	want := "1 request waiting will be answered cancelled once bulk is resumed (offboardctl resume contoso --priority bulk); 1 answered so far, 1 of them cancelled\n"
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
