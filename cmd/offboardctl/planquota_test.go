package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignPlanOutOfTimeWaitingForQuotaSaysSo: a plan whose
// inventory pages spend the tenant's machines quota (100 calls a minute,
// pages of 2 devices here) waits for the quota's window to free, and a
// --timeout that runs out during that wait says so, with how long it
// waited and how much of the inventory was read: a bare "took longer
// than it is allowed" sent the operator to the API or the network.
func TestCampaignPlanOutOfTimeWaitingForQuotaSaysSo(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{PageSize: 2})
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d",
		"--timeout", "10s", "--out", filepath.Join(e.dir, "plan.csv"))
	if code != exitFailed || !strings.Contains(stderr, "--timeout 10s ran out") {
		t.Fatalf("exit %d, stderr %q: want 1 and the --timeout", code, stderr)
	}
	if !strings.Contains(stderr, "waiting for the tenant's machines quota") || !strings.Contains(stderr, "inventory pages read") {
		t.Errorf("stderr %q does not say the plan waited for the tenant's machines quota, and how much it read", stderr)
	}
	if d := regexp.MustCompile(`\d\.\d{2,}s`).FindString(stderr); d != "" {
		t.Errorf("stderr %q gives a time as %s: want it rounded", stderr, d)
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q: want one line", stderr)
	}
}

// TestPlanGivenUpUnderASecondSaysItsTime: a plan allowed less than a
// second (a short --timeout, less the answer's margin) that is given up
// says the time it was allowed as it was, not rounded to nothing: "the
// 0s it is allowed" read as if the worker had been given no time at all.
func TestPlanGivenUpUnderASecondSaysItsTime(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{PageSize: 2})
	js := e.js(t)
	for _, allowed := range []time.Duration{40 * time.Millisecond, 340 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		req := offboard.PlanRequest{InactiveFor: 90 * 24 * time.Hour, Timeout: allowed}
		reply, _, err := offboard.RequestPlan(ctx, js, offboard.Subjects{}, "contoso", req, 10*time.Second)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("longer than the %v it is allowed", allowed)
		if reply.State != offboard.PlanFailed || !reply.OutOfTime || reply.Error == nil || !strings.Contains(reply.Error.Message, want) {
			t.Errorf("allowed %v: state %s, out of time %t, error %+v; want failed, out of time, saying %q", allowed, reply.State, reply.OutOfTime, reply.Error, want)
		}
	}
}

// TestPlanAskedOutOfTimeIsNotBuilt: a plan request whose asker's time ran
// out before it was sent (its timeout, the time left of the asker's
// deadline, below zero: a --timeout spent on the tenant's check) is not
// built. The worker took it for a request that says no timeout and read
// the inventory under its own 15 minutes until its next heartbeat found
// the asker gone, meanwhile refusing the tenant's next plan as busy.
func TestPlanAskedOutOfTimeIsNotBuilt(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{PageSize: 2})
	js := e.js(t)
	late, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	req := offboard.PlanRequest{InactiveFor: 90 * 24 * time.Hour}
	if _, _, err := offboard.RequestPlan(late, js, offboard.Subjects{}, "contoso", req, 10*time.Second); err == nil {
		t.Fatal("a plan asked out of time was answered")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req.Timeout = 200 * time.Millisecond
	reply, _, err := offboard.RequestPlan(ctx, js, offboard.Subjects{}, "contoso", req, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Error != nil && reply.Error.Code == offboard.PlanCodeBusy {
		t.Errorf("the next plan was refused: %s", reply.Error.Message)
	}
}
