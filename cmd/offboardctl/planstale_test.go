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
// cell that is no time refuses the file, unless --ignore-last-seen.
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

	// A lastSeen cell that is no time: the file is refused, nothing
	// published (its devices are not even read); with
	// --ignore-last-seen the cell is not read, and the rows run.
	bad := filepath.Join(e.dir, "retire-bad.csv")
	badRow := append([]string(nil), rows[8]...)
	badRow[2] = "last week"
	writeRows(t, bad, [][]string{badRow, rows[9]})
	if code, _, stderr := e.ctl("campaign", "run", "--tenant", "contoso", "--csv", bad, "--report", filepath.Join(e.dir, "refused-report.csv"), "--timeout", "1m"); code != exitUsage ||
		!strings.Contains(stderr, `line 2: lastSeen "last week" is not an RFC 3339 time`) || !strings.Contains(stderr, "--ignore-last-seen") {
		t.Errorf("a lastSeen that is no time: exit %d, %q; want exit 2 naming the line and --ignore-last-seen", code, stderr)
	}
	if n := e.machineCalls(badRow[0]) + e.machineCalls(rows[9][0]); n != 0 {
		t.Errorf("the devices of the refused file were read %d times: its rows were published", n)
	}
	want(run(bad, "--ignore-last-seen"), offboard.OutcomeCreated, offboard.OutcomeCreated)
	if n := len(e.sim.Actions(e.tenantID)); n != 7 {
		t.Errorf("%d actions in all, want 7", n)
	}
}

// TestCampaignRunTakesAPlanASpreadsheetSaved: a plan's CSV opened and
// saved in a spreadsheet comes back with a byte order mark, CRLF line
// ends and its lastSeen rewritten: fractions cut (2026-06-10T15:52:54Z),
// a space for the T and no zone (2026-06-10 15:52:54, the spreadsheet's
// form of the same UTC time), fractions rounded to milliseconds, an
// offset for the Z. Each is the plan's sighting: the devices not seen
// since are offboarded, none is refused as seen again. A lastSeen the
// spreadsheet wrote in its locale's form (6/10/2026 15:52: no seconds,
// the day and month in an order the file does not tell) or a second
// header row (two plans joined) refuses the whole file before anything
// is published, one line naming the line and --ignore-last-seen, exit
// 2. Before, the first file's rows were refused, every one, as devices
// seen again, and the other two ran, each such row invalid_request.
func TestCampaignRunTakesAPlanASpreadsheetSaved(t *testing.T) {
	e := setupPlanWith(t, worker.PlanOptions{}, "1m", true)
	plan := filepath.Join(e.dir, "plan.csv")
	if code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", plan); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	rows := readCSV(t, plan)[1:6]
	lastSeen := func(row []string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, row[2])
		if err != nil {
			t.Fatal(err)
		}
		if v.Nanosecond()%int(time.Millisecond) == 0 {
			t.Fatalf("lastSeen %s: the simulator gives 7 digits; the test needs them", row[2])
		}
		return v.UTC()
	}
	saved := [][]string{}
	for i, row := range rows[:4] {
		row = append([]string(nil), row...)
		v := lastSeen(row)
		switch i {
		case 0:
			row[2] = v.Format("2006-01-02T15:04:05Z07:00")
		case 1:
			row[2] = v.Format("2006-01-02 15:04:05")
		case 2:
			row[2] = v.Round(time.Millisecond).Format("2006-01-02T15:04:05.000Z07:00")
		case 3:
			row[2] = v.In(time.FixedZone("", 2*3600)).Truncate(time.Second).Format("2006-01-02T15:04:05-07:00")
		}
		saved = append(saved, row)
	}
	write := func(name string, rows [][]string, header ...[]string) string {
		t.Helper()
		var b strings.Builder
		b.WriteString("\ufeff" + strings.Join(offboard.PlanHeader, ",") + "\r\n")
		for _, row := range rows {
			b.WriteString(strings.Join(row, ",") + "\r\n")
		}
		path := filepath.Join(e.dir, name)
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	csvFile := write("saved.csv", saved)
	report := filepath.Join(e.dir, "saved-report.csv")
	if code, stdout, stderr := e.ctl("campaign", "run", "--tenant", "contoso", "--csv", csvFile, "--report", report, "--timeout", "1m"); code != exitOK {
		t.Fatalf("run: exit %d: %s%s", code, stdout, stderr)
	}
	for i, line := range readCSV(t, report)[1:] {
		if line[4] != offboard.OutcomeCreated {
			t.Errorf("row %d, lastSeen %s: %v; want created (Defender's lastSeen %s)", i+1, saved[i][2], line, rows[i][2])
		}
	}

	// A locale's form, or a second header: the file is refused whole.
	locale := append([]string(nil), rows[4]...)
	locale[2] = lastSeen(locale).Format("1/2/2006 15:04")
	header := append([]string(nil), offboard.PlanHeader...)
	before := len(e.sim.Calls())
	for _, tc := range []struct {
		name string
		rows [][]string
		says string
	}{
		{"locale.csv", [][]string{locale}, `line 2: lastSeen "` + locale[2] + `" is not an RFC 3339 time`},
		{"joined.csv", [][]string{rows[4], header, rows[4]}, "line 3 repeats the header row"},
	} {
		code, _, stderr := e.ctl("campaign", "run", "--tenant", "contoso", "--csv", write(tc.name, tc.rows),
			"--report", filepath.Join(e.dir, "refused-report.csv"), "--timeout", "1m")
		if code != exitUsage || !strings.Contains(stderr, tc.says) || !strings.Contains(stderr, "--ignore-last-seen") ||
			strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, %q; want exit 2, one line saying %q and naming --ignore-last-seen", tc.name, code, stderr, tc.says)
		}
	}
	if n := len(e.sim.Calls()) - before; n != 0 {
		t.Errorf("%d calls for the refused files: something was published", n)
	}
}
