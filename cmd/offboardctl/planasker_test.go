package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignPlanAskerGoneEndsThePlan: an asker that stops waiting
// before its --timeout (interrupted, killed) leaves no reader of the plan:
// the worker gives the plan up at its next word that it is at work, as no
// one listens for it any more, rather than go on spending the tenant's
// machines quota and answer the next plan of the tenant busy until the
// --timeout it was given.
func TestCampaignPlanAskerGoneEndsThePlan(t *testing.T) {
	t.Parallel()
	e, hold, held := setupPlanHeld(t) // the first plan's first page never comes
	t.Cleanup(func() { close(hold) })
	replies := e.askPlan(t)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the plan read no page")
	}
	if err := replies.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second) // the worker's word comes every 5 s
	for {
		again := e.askPlan(t)
		m, err := again.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no answer to a plan asked again: %v", err)
		}
		_ = again.Unsubscribe()
		var r offboard.PlanReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if r.State == offboard.PlanWorking {
			return // taken: the first plan was given up
		}
		if r.Error == nil || r.Error.Code != offboard.PlanCodeBusy || time.Now().After(deadline) {
			t.Fatalf("a plan asked again after the first asker left: %s", m.Data)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
