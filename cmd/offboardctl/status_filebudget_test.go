package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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
