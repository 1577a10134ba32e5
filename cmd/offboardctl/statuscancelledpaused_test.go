package main

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignStatusOfACancelledCampaignWhilePaused: a cancelled
// campaign's requests are answered cancelled while an operator's pause
// holds their priority, so its ETA is not "paused". Before, campaign
// status said "paused" (etaSeconds null), as if a resume were needed.
func TestCampaignStatusOfACancelledCampaignWhilePaused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "bulk"); code != exitOK {
		t.Fatalf("pause: exit %d: %s", code, errs)
	}
	e.stopWorker() // the requests stay waiting, for the status to read
	for i, m := range e.machines[:2] {
		id := fmt.Sprintf("camp-%06d", i+1)
		if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
			offboard.Request{RequestID: id, MachineID: m.ID, Source: "campaign:camp"}); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "camp"); code != exitOK {
		t.Fatalf("campaign cancel: exit %d: %s", code, errs)
	}
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "camp", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || st.Waiting != 2 || st.Cancelled == nil {
		t.Fatalf("campaign status: exit %d, %v, %s %s", code, err, out, errs)
	}
	if st.Paused || st.ETA == "paused" || st.ETASeconds == nil {
		t.Errorf("a cancelled campaign's status while bulk is paused: paused %v, eta %q, etaSeconds %v; want its requests not held", st.Paused, st.ETA, st.ETASeconds)
	}
}
