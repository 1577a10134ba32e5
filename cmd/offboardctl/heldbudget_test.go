package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A spent budget holds the tenant's requests in the stream, and status
// says so as it says a pause does: heldByBudget in --json, and the
// budget's cell names the requests it holds.
func TestStatusSaysTheBudgetHolds(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 10, 2)
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	if code, _, errOut := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv"),
		"--timeout", "2s"); code != exitFailed {
		t.Fatalf("campaign run held by the budget: exit %d: %s", code, errOut)
	}
	e.waitFor("2 results", time.Minute, func() bool { return len(e.results()) >= 2 })

	_, out, _ := e.ctl(t.Context(), "status", tenant, "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("status: %v %s", err, out)
	}
	st := sts[0]
	waiting := st.Backlog[offboard.Bulk] - st.InFlight
	if st.Budget.Left == nil || *st.Budget.Left != 0 || waiting == 0 || st.HeldByBudget != waiting || st.Held != 0 {
		t.Errorf("status: budget %+v, backlog %v, in flight %d, held by the budget %d, by a pause %d; want the %d in the stream held by the budget",
			st.Budget, st.Backlog, st.InFlight, st.HeldByBudget, st.Held, waiting)
	}
	_, out, _ = e.ctl(t.Context(), "status", tenant)
	if !strings.Contains(out, "left 0, holding ") {
		t.Errorf("status does not say the budget holds requests:\n%s", out)
	}
}
