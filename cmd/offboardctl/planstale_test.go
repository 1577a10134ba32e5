package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// writeRows writes a campaign CSV of the plan's header and the given
// rows, as an operator keeps part of a plan after reviewing it.
func writeRows(t *testing.T, path string, rows [][]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	_ = w.Write(offboard.PlanHeader)
	_ = w.WriteAll(rows)
	if err := f.Close(); err != nil || w.Error() != nil {
		t.Fatal(err, w.Error())
	}
}

// seenAgain makes the simulator report the plan's device as seen ten
// minutes ago, as a laptop taken out of storage is.
func (e *planEnv) seenAgain(m mdesim.Machine) {
	m.LastSeen, m.HealthStatus = time.Now().Add(-10*time.Minute), "Active"
	e.sim.AddMachine(e.tenantID, m)
}

// machineCalls counts the simulator's machines calls for one device.
func (e *planEnv) machineCalls(id string) int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.API == "machines" && strings.EqualFold(c.MachineID, id) {
			n++
		}
	}
	return n
}

// TestCampaignRunRefusesADeviceSeenSinceThePlan: a plan is written, then
// one of its devices is seen again (its lastSeen now ten minutes old,
// which the tenant's requireInactiveFor of 1m lets through), then the
// plan's CSV is run. Each row's request carries the row's lastSeen as
// notSeenSince: the device seen again is refused, blocked_by_policy, rule
// notSeenSince, with no offboard call, and the others are created. A dry
// run shows the refusal too; --ignore-last-seen offboards it; a lastSeen
// cell that is no time makes its row invalid_request, unpublished.
// Before, the device seen again was offboarded.
func TestCampaignRunRefusesADeviceSeenSinceThePlan(t *testing.T) {
	e := setupPlanWith(t, worker.PlanOptions{}, "1m", true)
	plan := filepath.Join(e.dir, "stale.csv")
	if code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", plan); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	rows := readCSV(t, plan)[1:]
	byID := map[string]mdesim.Machine{}
	for _, m := range e.stale {
		byID[m.ID] = m
	}
	run := func(csvFile string, args ...string) [][]string {
		t.Helper()
		report := strings.TrimSuffix(csvFile, ".csv") + "-report.csv"
		args = append([]string{"campaign", "run", "--tenant", "contoso", "--csv", csvFile, "--report", report, "--timeout", "1m"}, args...)
		code, stdout, stderr := e.ctl(args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s%s", args, code, stdout, stderr)
		}
		return readCSV(t, report)[1:]
	}
	want := func(report [][]string, outcomes ...string) {
		t.Helper()
		for i, line := range report {
			if line[4] != outcomes[i] {
				t.Errorf("report row %v: outcome %s, want %s", line, line[4], outcomes[i])
				continue
			}
			if line[4] == offboard.OutcomeFailed && (line[5] != offboard.CodeBlockedByPolicy || !strings.Contains(line[6], "blocked by notSeenSince: Defender saw the device again")) {
				t.Errorf("report row %v: want blocked_by_policy by notSeenSince", line)
			}
		}
	}

	// The plan's first four devices; the second is seen again.
	campaign := filepath.Join(e.dir, "retire.csv")
	writeRows(t, campaign, rows[0:4])
	e.seenAgain(byID[rows[1][0]])
	want(run(campaign), offboard.OutcomeCreated, offboard.OutcomeFailed, offboard.OutcomeCreated, offboard.OutcomeCreated)
	actions := map[string]int{}
	for _, a := range e.sim.Actions(e.tenantID) {
		actions[a.MachineID]++
	}
	if actions[rows[1][0]] != 0 || actions[rows[0][0]] != 1 || actions[rows[2][0]] != 1 || actions[rows[3][0]] != 1 || len(actions) != 3 {
		t.Fatalf("actions by device %v: want one for each device of rows 1, 3 and 4, none for %s, seen again", actions, rows[1][0])
	}

	// A dry run shows what would be refused.
	dry := filepath.Join(e.dir, "retire-dry.csv")
	writeRows(t, dry, rows[4:6])
	e.seenAgain(byID[rows[5][0]])
	want(run(dry, "--dry-run"), offboard.OutcomeDryRun, offboard.OutcomeFailed)

	// --ignore-last-seen: the device seen again is offboarded all the same.
	// Given twice with two values, the run is refused: the last alone
	// would count.
	if code, _, stderr := e.ctl("campaign", "run", "--tenant", "contoso", "--csv", plan, "--ignore-last-seen", "--ignore-last-seen=false"); code != exitUsage ||
		!strings.Contains(stderr, "--ignore-last-seen given twice") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("--ignore-last-seen given twice: exit %d, %q; want exit 2, one line", code, stderr)
	}
	ignore := filepath.Join(e.dir, "retire-anyway.csv")
	writeRows(t, ignore, rows[6:8])
	e.seenAgain(byID[rows[7][0]])
	want(run(ignore, "--ignore-last-seen"), offboard.OutcomeCreated, offboard.OutcomeCreated)

	// A lastSeen cell that is no time: its row is invalid_request, and
	// not published (its device is not even read).
	bad := filepath.Join(e.dir, "retire-bad.csv")
	badRow := append([]string(nil), rows[8]...)
	badRow[2] = "last week"
	writeRows(t, bad, [][]string{badRow, rows[9]})
	report := run(bad)
	if line := report[0]; line[4] != offboard.OutcomeFailed || line[5] != offboard.CodeInvalidRequest || !strings.Contains(line[6], `lastSeen "last week" is not an RFC 3339 time`) {
		t.Errorf("row with a bad lastSeen: %v; want invalid_request naming it", line)
	}
	if report[1][4] != offboard.OutcomeCreated {
		t.Errorf("row after it: %v; want created", report[1])
	}
	if n := e.machineCalls(badRow[0]); n != 0 {
		t.Errorf("the device of the invalid row was read %d times: the row was published", n)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 6 {
		t.Errorf("%d actions in all, want 6", n)
	}
}
