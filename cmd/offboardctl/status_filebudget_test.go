package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestFileBudgetNotRecordedIsNotShownAsNone: consumers made from
// deploy/nats for a worker under --no-setup record neither the tenant's
// limits nor its tenants file's budget, which the worker applies all the
// same. status showed such a tenant's budget as "none" and budget
// --clear said "the tenants file sets no budget, so none applies": an
// operator read the tenant as uncapped, and its requests held by the
// file's budget as waiting for nothing. Neither is known: each says so.
func TestFileBudgetNotRecordedIsNotShownAsNone(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	// As deploy/nats makes them: the tenant and priority, nothing more.
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	url := nc.ConnectedUrl()

	code, out, errs := ctl(t, url, "status", "contoso")
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	if strings.Contains(out, "none, left n/a") || !strings.Contains(out, "contoso: its consumers do not record the tenants file's budget") {
		t.Errorf("status of a tenant whose consumers record no budget shows it as none, or does not say it is not known:\n%s", out)
	}
	_, out, _ = ctl(t, url, "status", "contoso", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	if !sts[0].Budget.FileNotKnown {
		t.Errorf("status --json does not say the file's budget is not known: %s", out)
	}

	if code, _, errs := ctl(t, url, "budget", "contoso", "5/1h"); code != exitOK {
		t.Fatalf("budget 5/1h: exit %d, stderr %q", code, errs)
	}
	_, out, _ = ctl(t, url, "status", "contoso")
	if !strings.Contains(out, "5/1h (override), used 0, left 5") || strings.Contains(out, "do not record the tenants file's budget") {
		t.Errorf("status with an override in force:\n%s", out)
	}
	code, out, errs = ctl(t, url, "budget", "contoso", "--clear")
	if code != exitOK || strings.Contains(out, "sets no budget") || !strings.Contains(out, "cleared: the tenants file's budget applies;") {
		t.Errorf("budget --clear: exit %d, stdout %q, stderr %q; want the file's budget, not none", code, out, errs)
	}
}

// TestFileBudgetNotRecordedBesideAnIgnoredOverride: an override the
// worker ignores (unreadable, or a window longer than the budget journal
// counts) leaves the tenants file's budget in force. On consumers that
// do not record it, status showed "none (override … ignored)", without
// the line that the file's budget holds the tenant: the override's
// entry took the place of what the consumers said.
func TestFileBudgetNotRecordedBesideAnIgnoredOverride(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	// Longer than the 48h the budget journal keeps, less the lease.
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "10/47h", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	url := nc.ConnectedUrl()
	_, out, _ := ctl(t, url, "status", "contoso")
	if !strings.Contains(out, "file's not known (override 10/47h ignored)") || !strings.Contains(out, "contoso: its consumers do not record the tenants file's budget") {
		t.Errorf("status of a tenant whose consumers record no budget, its override ignored:\n%s", out)
	}
	_, out, _ = ctl(t, url, "status", "contoso", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	if b := sts[0].Budget; !b.FileNotKnown || b.Ignored == "" || b.InForce != "" {
		t.Errorf("status --json, its override ignored: budget %+v, want the file's not known", b)
	}
}
