package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A pause of one priority holds that priority alone: the other's requests
// fetched and waiting in the worker (here for a budget slot) are still
// worked, and the ETA says when, with the paused ones left out. With none
// of the other priority left in the stream, status read the tenant as
// held whole: ETA "paused", and no etaSeconds in --json.
func TestStatusETAOfTheOtherPriorityInFlightWhileOnePaused(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 9, 2)
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "normal", "--reason", "hold"); code != exitOK {
		t.Fatalf("pause: exit %d: %s", code, errs)
	}
	body := fmt.Sprintf(`{"requestId":"cmdb-1","machineId":%q}`, e.machines[8].ID)
	if _, err := e.js.Publish(t.Context(), offboard.Subjects{}.Request(tenant, offboard.Normal), []byte(body)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines[:8]))
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
	var st tenantStatus
	// Bulk requests take maxInFlight-1 of the 8 slots: the 8th row may
	// wait in the stream, held by the spent budget.
	e.waitFor("6 bulk requests fetched, waiting for a budget slot or held by it in the stream, 1 normal held by the pause", time.Minute, func() bool {
		st = status()
		return len(e.results()) == 2 && st.InFlight > 0 && st.InFlight+st.HeldByBudget == 6 && st.Backlog[offboard.Bulk] == 6 && st.Held == 1
	})
	if st.ETA == nil || *st.ETA < 3600 || !st.ETAByBudget {
		t.Errorf("bulk in flight for a budget slot, normal paused: ETA %s (by the budget: %v), want the budget's, hours",
			etaCell(st), st.ETAByBudget)
	}
	if _, out, _ := e.ctl(t.Context(), "status", tenant); !strings.Contains(out, "(budget) (+paused)\n") {
		t.Errorf("status does not give the budget's ETA with a part paused:\n%s", out)
	}
}

// An ETA under a second of the priorities not paused says "now", and,
// when a paused priority holds requests, says so as any other ETA does:
// "now" alone read as the whole backlog done at once.
func TestStatusETANowSaysWhatIsPaused(t *testing.T) {
	t.Parallel()
	eta := 0.2
	st := tenantStatus{ETA: &eta, Held: 3, Backlog: map[offboard.Priority]uint64{offboard.Normal: 3, offboard.Bulk: 1}}
	if got := etaCell(st); got != "now (+paused)" {
		t.Errorf("ETA %q of a bulk call under way with 3 normal requests paused, want \"now (+paused)\"", got)
	}
	st.Held, st.Backlog[offboard.Normal] = 0, 0
	if got := etaCell(st); got != "now" {
		t.Errorf("ETA %q of a bulk call under way, nothing paused, want \"now\"", got)
	}
}
