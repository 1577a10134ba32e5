package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignPlanGivenUpAtTheTimeoutNamesTheFlag: the worker is given
// the time left of --timeout, so it gives a plan up a moment before
// offboardctl's own deadline, and its answer may come first. That answer
// is the same event as the --timeout running out, and is told as such,
// not as "the plan took longer than the 999.907825ms it is allowed".
func TestCampaignPlanGivenUpAtTheTimeoutNamesTheFlag(t *testing.T) {
	t.Parallel()
	// A worker gives the plan up just before the time the request allows.
	e := setupPlanFailingLate(t, func(req offboard.PlanRequest) string {
		return `"outOfTime":true,"error":{"code":"inventory_unreadable","message":"the plan took longer than the ` +
			(req.Timeout - time.Millisecond).String() + ` it is allowed, and was given up"}`
	})
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "northwind", "--inactive-for", "90d", "--unknown-tenant",
		"--timeout", "2s", "--out", filepath.Join(e.dir, "northwind.csv"))
	if code != exitFailed || !strings.Contains(stderr, "--timeout 2s ran out") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q: want 1 and one line naming the --timeout that ran out", code, stderr)
	}
}

// TestCampaignPlanRefusedNearTheTimeoutSaysWhy: an inventory the API
// refused (401) in the last second of --timeout is that refusal, not the
// --timeout.
func TestCampaignPlanRefusedNearTheTimeoutSaysWhy(t *testing.T) {
	t.Parallel()
	e := setupPlanFailingLate(t, func(offboard.PlanRequest) string {
		return `"error":{"code":"inventory_unreadable","message":"HTTP 401 Unauthorized"}`
	})
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "northwind", "--inactive-for", "90d", "--unknown-tenant",
		"--timeout", "1s", "--out", filepath.Join(e.dir, "northwind.csv"))
	if code != exitFailed || strings.Contains(stderr, "--timeout") || !strings.Contains(stderr, "HTTP 401") {
		t.Errorf("exit %d, stderr %q: want 1 and the API's refusal, not the --timeout", code, stderr)
	}
}

// setupPlanFailingLate is setupPlan with a planner of tenant northwind,
// which no worker serves: it takes a plan request, then 300 ms before the
// time the request allows answers it failed, with the members failure
// gives for the request.
func setupPlanFailingLate(t *testing.T, failure func(offboard.PlanRequest) string) *planEnv {
	t.Helper()
	e := setupPlan(t, worker.PlanOptions{})
	nc := e.js(t).Conn()
	if _, err := nc.Subscribe(offboard.Subjects{}.Plan("northwind"), func(m *nats.Msg) {
		var req offboard.PlanRequest
		_ = json.Unmarshal(m.Data, &req)
		_ = m.Respond([]byte(`{"state":"working","tenant":"northwind","heartbeat":1000000000}`))
		time.Sleep(req.Timeout - 300*time.Millisecond)
		_ = m.Respond([]byte(`{"state":"failed","tenant":"northwind",` + failure(req) + `}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCampaignPlanWorkerStoppedIsNotOutOfTime: a worker stopped during
// a plan says so, and not that the plan ran out of time: stopped in the
// last second of --timeout, it would be told as the flag running out.
func TestCampaignPlanWorkerStoppedIsNotOutOfTime(t *testing.T) {
	t.Parallel()
	e, hold, held := setupPlanHeld(t)
	defer close(hold)
	replies := e.askPlan(t)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the plan read no page")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- e.app.Stop(context.Background()) }()
	for {
		m, err := replies.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("no final reply: %v", err)
		}
		var r offboard.PlanReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if r.State == offboard.PlanWorking {
			continue
		}
		if r.Error == nil || !strings.Contains(r.Error.Message, "the worker stopped") || r.OutOfTime {
			t.Errorf("reply %s: want the worker stopped, not out of time", m.Data)
		}
		break
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
