package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A pause hands the requests fetched and waiting in the worker (here for
// a budget slot) back to the stream, where they wait for a redelivery the
// paused worker never asks for: the server still counts them delivered.
// Status showed them in flight, not held, and with none left in the
// stream an ETA of "now" for a tenant paused whole.
func TestStatusOfRequestsHandedBackByAPause(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 8, 2)
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	if code, _, errOut := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv"),
		"--timeout", "2s"); code != exitFailed {
		t.Fatalf("campaign run held by the budget: exit %d: %s", code, errOut)
	}
	status := func() tenantStatus {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), "status", tenant, "--json")
		var sts []tenantStatus
		if err := json.Unmarshal([]byte(out), &sts); code != exitOK || err != nil || len(sts) != 1 {
			t.Fatalf("status: exit %d, %v: %s %s", code, err, out, errs)
		}
		return sts[0]
	}
	// Bulk requests take maxInFlight-1 of the 8 slots: the 8th row may
	// wait in the stream, held by the spent budget.
	e.waitFor("6 requests fetched, waiting for a budget slot, or held by it in the stream", time.Minute, func() bool {
		st := status()
		return len(e.results()) == 2 && st.InFlight > 0 && st.InFlight+st.HeldByBudget == 6 && st.Backlog[offboard.Bulk] == 6
	})
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--reason", "hold"); code != exitOK {
		t.Fatalf("pause: exit %d: %s", code, errs)
	}
	st := status()
	if st.ETA != nil || st.Held != 6 || st.InFlight != 0 || st.HeldByBudget != 0 {
		t.Errorf("paused: ETA %v, held by the pause %d, in flight %d, held by the budget %d; want no ETA, the 6 held by the pause",
			etaCell(st), st.Held, st.InFlight, st.HeldByBudget)
	}
	if _, out, _ := e.ctl(t.Context(), "status", tenant); !strings.Contains(out, "paused\n") {
		t.Errorf("status of a tenant paused whole does not say paused:\n%s", out)
	}
}
