package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
)

// Bad usage and an unreadable CSV exit 2 before anything is published.
func TestCampaignBadUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string { return writeFile(t, dir, name, body) }
	good := write("good.csv", "machineId\n"+strings.Repeat("a", 40)+"\n")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no tenant":                  {"campaign", "run", "--csv", good},
		"bad tenant":                 {"campaign", "run", "--tenant", "Con So", "--csv", good},
		"no csv":                     {"campaign", "run", "--tenant", "contoso"},
		"missing csv":                {"campaign", "run", "--tenant", "contoso", "--csv", filepath.Join(dir, "none.csv")},
		"no device column":           {"campaign", "run", "--tenant", "contoso", "--csv", write("cols.csv", "host,owner\na,b\n")},
		"broken quoting":             {"campaign", "run", "--tenant", "contoso", "--csv", write("broken.csv", "machineId\n\"abc\n")},
		"empty":                      {"campaign", "run", "--tenant", "contoso", "--csv", write("empty.csv", "")},
		"bad priority":               {"campaign", "run", "--tenant", "contoso", "--csv", good, "--priority", "urgent"},
		"bad name":                   {"campaign", "run", "--tenant", "contoso", "--csv", good, "--name", "Big One"},
		"name dot":                   {"campaign", "run", "--tenant", "contoso", "--csv", good, "--name", "wave."},
		"name dots":                  {"campaign", "run", "--tenant", "contoso", "--csv", good, "--name", ".."},
		"name leading dot":           {"campaign", "run", "--tenant", "contoso", "--csv", good, "--name", ".wave"},
		"name inner dots":            {"campaign", "run", "--tenant", "contoso", "--csv", good, "--name", "a..b"},
		"no name from csv":           {"campaign", "run", "--tenant", "contoso", "--csv", write("..csv", "machineId\n"+strings.Repeat("a", 40)+"\n")},
		"cancel bad name":            {"campaign", "cancel", "--tenant", "contoso", "--name", "wave."},
		"status bad name":            {"campaign", "status", "--tenant", "contoso", "--name", "."},
		"bad rate":                   {"campaign", "run", "--tenant", "contoso", "--csv", good, "--rate", "100"},
		"comment too long":           {"campaign", "run", "--tenant", "contoso", "--csv", good, "--comment", strings.Repeat("c", 1001)},
		"comment escape":             {"campaign", "run", "--tenant", "contoso", "--csv", good, "--comment", "CHG1\x1b[2J"},
		"comment newline":            {"campaign", "run", "--tenant", "contoso", "--csv", good, "--comment", "CHG1\nCHG2"},
		"cancel no name":             {"campaign", "cancel", "--tenant", "contoso"},
		"cancel no tenant, old --by": {"campaign", "cancel", "--name", "w", "--by", "bob"},
		"report no dir":              {"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", filepath.Join(dir, "none", "r.csv")},
		"report is csv":              {"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", good},
		"report is csv, other path":  {"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", filepath.Join(dir, "sub", "..", "good.csv")},
		"report is csv, linked":      {"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", link},
		"report is a dir":            {"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", dir},
		"timeout negative":           {"campaign", "run", "--tenant", "contoso", "--csv", good, "--timeout", "-1s"},
		"max pending huge":           {"campaign", "run", "--tenant", "contoso", "--csv", good, "--max-pending", "99999999999"},
		"max pending zero":           {"campaign", "run", "--tenant", "contoso", "--csv", good, "--max-pending", "0"},
		"progress zero":              {"campaign", "run", "--tenant", "contoso", "--csv", good, "--progress-every", "0s"},
		"progress negative":          {"campaign", "run", "--tenant", "contoso", "--csv", good, "--progress-every", "-5s"},
		"plan health list":           {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--health", "Inactive,NoSensorData"},
		"plan os padded":             {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--os", " Windows11"},
		"plan timeout zero":          {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--timeout", "0s"},
		"plan timeout negative":      {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--timeout", "-1s"},
		"connect timeout zero":       {"--connect-timeout", "0s", "status"},
		"connect timeout negative":   {"--connect-timeout", "-1s", "campaign", "status", "--tenant", "contoso", "--name", "wave"},
		"cancel reason newline":      {"campaign", "cancel", "--tenant", "contoso", "--name", "wave", "--reason", "a\nb"},
		"cancel empty as":            {"campaign", "cancel", "--tenant", "contoso", "--name", "wave", "--as", ""},
		"retry neither":              {"dead", "retry", "contoso"},
		"retry both":                 {"dead", "retry", "contoso", "--all", "--seq", "3"},
		"retry seq zero":             {"dead", "retry", "contoso", "--seq", "0"},
		"retry seq zero and all":     {"dead", "retry", "contoso", "--seq", "0", "--all"},
		"retry unknown code":         {"dead", "retry", "contoso", "--all", "--code", "machine_not_fond"},
		"ls unknown code":            {"dead", "ls", "--code", "nosuchcode"},
		"status without name":        {"campaign", "status", "--tenant", "contoso"},
		"run name empty":             {"campaign", "run", "--tenant", "contoso", "--csv", good, "--name", ""},
		"run report empty":           {"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", ""},
		"plan out empty":             {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", ""},
	} {
		var out, errb bytes.Buffer
		// Nothing listens there: a usage error comes before connecting.
		if code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, args...), &out, &errb); code != exitUsage {
			t.Errorf("%s: exit %d, want %d: %s", name, code, exitUsage, errb.String())
		}
		if lines := strings.Count(strings.TrimSpace(errb.String()), "\n"); lines != 0 {
			t.Errorf("%s: %d lines on stderr, want one: %q", name, lines+1, errb.String())
		}
	}
}

// TestCampaignCSVBounds: a CSV larger than campaign.MaxCSVSize is refused
// before it is copied, and a quote left open before megabytes of rows
// stops the read once its record passes campaign.MaxRecordSize: each
// bad usage, on one line.
func TestCampaignCSVBounds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	large := writeFile(t, dir, "large.csv", "machineId\n"+strings.Repeat("a", 40)+"\n")
	if err := os.Truncate(large, campaign.MaxCSVSize+1); err != nil { // sparse: nothing written
		t.Fatal(err)
	}
	open := writeFile(t, dir, "open.csv", "machineId,comment\n"+strings.Repeat("a", 40)+",\"oops\n"+
		strings.Repeat(strings.Repeat("a", 40)+",c\n", 2*campaign.MaxRecordSize/42))
	for csv, want := range map[string]string{large: "more than 256 MiB: split the campaign", open: "row 1: longer than 1 MiB: is a quote left open?"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "run", "--tenant", "contoso", "--csv", csv}, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", filepath.Base(csv), code, errb.String(), exitUsage, want)
		}
	}
}

// On a terminal, campaign run shows a progress bar.
func TestCampaignProgressBarOnATerminal(t *testing.T) {
	t.Parallel()
	got := campaignOnATerminal(t, 160, 30)
	if !strings.Contains(got, "\r") || !strings.Contains(got, "30/30") || !strings.Contains(got, "created 30") || !strings.Contains(got, "ETA") {
		t.Errorf("no progress bar on the terminal: %q", got)
	}
}

// On a terminal of 80 columns the bar's line fits: a line longer than
// the terminal wraps, and each redraw, which goes back to the start of
// the last row only, left a new line behind; and the bar had no room.
func TestCampaignProgressBarFitsTheTerminal(t *testing.T) {
	t.Parallel()
	got := campaignOnATerminal(t, 80, 300)
	bars := 0
	for _, line := range strings.FieldsFunc(got, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if !strings.Contains(line, "% |") {
			continue // the summary: a line of its own
		}
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("%d columns on a terminal of 80: %q", n, line)
		}
		if strings.Contains(line, "█") && strings.Contains(line, "ETA") {
			bars++
		}
	}
	if bars == 0 {
		t.Errorf("no bar with its ETA on the terminal: %q", got)
	}
}

// On a terminal too narrow for the bar and its count, the description is
// left out, not shown whole: a width that left no room, or less than none
// (20 columns, a campaign of 300 rows), was taken for one not known.
func TestCampaignProgressBarOnANarrowTerminal(t *testing.T) {
	t.Parallel()
	got := campaignOnATerminal(t, 20, 300)
	for _, line := range strings.FieldsFunc(got, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if strings.Contains(line, "% |") && utf8.RuneCountInString(line) > 20 {
			t.Errorf("%d columns on a terminal of 20: %q", utf8.RuneCountInString(line), line)
		}
	}
}

// A large campaign's description on an 80-column terminal keeps its
// ETA: the outcomes without rows are left out before anything is cut.
func TestBarDescriptionFits(t *testing.T) {
	t.Parallel()
	s := progressSnapshot{counts: campaign.Counts{Rows: 100000, Created: 12345, Failed: 345, Waiting: 87310}, eta: 47 * time.Hour}
	room := 80 - 12 - len("(100000/100000)")
	for _, tc := range []struct {
		room int
		want string
	}{
		{-1, "created 12345 · pending 0 · dry 0 · failed 345 · waiting 87310 · ETA " + campaign.Human(47*time.Hour)},
		{room, "created 12345, failed 345, waiting 87310, ETA " + campaign.Human(47*time.Hour)},
		{12, "created 123…"},
		{0, ""},
	} {
		if got := fitDescription(s, tc.room); got != tc.want || tc.room >= 0 && utf8.RuneCountInString(got) > tc.room {
			t.Errorf("room %d: %q, want %q", tc.room, got, tc.want)
		}
	}
}

// campaignOnATerminal runs a campaign of rows devices with its standard
// output on a pseudo-terminal of cols columns, and returns what it wrote.
func campaignOnATerminal(t *testing.T, cols uint16, rows int) string {
	t.Helper()
	tty, shown, closed := openTerminal(t, cols)
	e := newEnv(t, rows)
	e.startWorker()
	b := idsCSV(e.machines)
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "tty.csv")
	if err := os.WriteFile(csvPath, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	code := runContext(t.Context(), []string{"--nats-url", e.url, "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", filepath.Join(dir, "r.csv")}, tty, &errb)
	closed()
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got := shown()
	t.Logf("terminal: %q", got[max(0, len(got)-400):])
	return got
}

// A report in a directory the user cannot write in is refused before
// anything is published.
func TestCampaignReportDirNotWritable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root writes in any directory")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	if err := os.WriteFile(good, []byte("machineId\n"+strings.Repeat("a", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "run", "--tenant", "contoso", "--csv", good, "--report", filepath.Join(ro, "r.csv")}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "cannot write") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// The report and the plan are written next to their name and renamed over
// it: an existing name that is not a regular file (a FIFO, a symbolic
// link, even one to a regular file or to nothing) is refused before
// anything is done, and left as it was.
func TestOutputNotARegularFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, dir, "good.csv", "machineId\n"+strings.Repeat("a", 40)+"\n")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	target := writeFile(t, dir, "target.csv", "kept\n")
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.csv")
	if err := os.Symlink(filepath.Join(dir, "none.csv"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, link, dangling} {
		before, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkOutputFile("--out", path); err == nil {
			t.Errorf("checkOutputFile(%s): accepted", path)
		}
		for _, args := range [][]string{
			{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", path},
			{"campaign", "run", "--tenant", "contoso", "--csv", good, "--report", path},
		} {
			var out, errb bytes.Buffer
			// Nothing listens there: a usage error comes before connecting.
			code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, args...), &out, &errb)
			if code != exitUsage || !strings.Contains(errb.String(), "not a regular file") && !strings.Contains(errb.String(), "symbolic link") ||
				strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
			}
		}
		after, err := os.Lstat(path)
		if err != nil || after.Mode() != before.Mode() {
			t.Errorf("%s: %v before, %v after (%v)", path, before.Mode(), after.Mode(), err)
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "kept\n" {
		t.Errorf("the link's target: %q %v", b, err)
	}
}

// A CSV that is not a regular file is refused before anything is read: it
// is read more than once (counted, checked against the results stored,
// published), and a pipe (--csv <(grep ... plan.csv)) would be empty the
// second time, a FIFO would block the run in its open, and /dev/zero would
// be read until memory ran out.
func TestCampaignCSVNotARegularFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "wave.csv")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	if _, err := w.WriteString("machineId\n" + strings.Repeat("a", 40) + "\n"); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	piped := fmt.Sprintf("/proc/self/fd/%d", r.Fd())
	for _, path := range []string{piped, fifo, "/dev/zero"} {
		done := make(chan struct{})
		var code int
		var out, errb bytes.Buffer
		go func() {
			defer close(done)
			// Nothing listens there: a usage error comes before connecting.
			code = run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "run", "--tenant", "contoso", "--name", "wave", "--csv", path}, &out, &errb)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still running after 10s", path)
		}
		if code != exitUsage || !strings.Contains(errb.String(), "not a regular file") || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q", path, code, errb.String())
		}
	}
}

// A CSV that opens but cannot be read (an I/O error: here /proc/self/mem,
// whose first page is not mapped) is an unreadable CSV: exit 2, one line,
// nothing left behind of the run's copy.
func TestCampaignCSVReadError(t *testing.T) {
	const path = "/proc/self/mem"
	if _, err := os.Stat(path); err != nil {
		t.Skip(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errb bytes.Buffer
	// Nothing listens there: an unreadable CSV is told before connecting.
	code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "run", "--tenant", "contoso", "--name", "wave", "--csv", path,
		"--report", filepath.Join(t.TempDir(), "report.csv")}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), path) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
		t.Errorf("exit %d, stderr %q; want exit %d naming %s", code, errb.String(), exitUsage, path)
	}
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
		t.Errorf("left in TMPDIR: %v %v", ents, err)
	}
}

// An existing report or plan larger than a campaign's CSV may be is
// replaced like any other: the CSV's size bound is the CSV's only. A
// campaign of many failed rows has a report of more than 256 MiB, and
// running it again was refused, naming --csv, as was writing its report.
func TestLargeOutputIsReplaced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	large := writeFile(t, dir, "large.csv", "kept\n")
	if err := os.Truncate(large, campaign.MaxCSVSize+1); err != nil { // sparse: nothing written
		t.Fatal(err)
	}
	if err := checkOutputFile("--out", large); err != nil {
		t.Errorf("checkOutputFile(--out %s): %v", large, err)
	}
	e := newEnv(t, 3)
	e.startWorker()
	csvPath := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	if code, _, stderr := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", large); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(large); err != nil || fi.Size() > 1<<20 {
		t.Errorf("report not replaced: %v, %v", fi, err)
	}
}

// --csv - is not standard input, which cannot be read twice: the run
// says so and how to go on, rather than that a file "-" does not exist.
func TestCampaignCSVFromStandardInput(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "run", "--tenant", "contoso", "--csv", "-"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "standard input") || !strings.Contains(errb.String(), "save it to a file") ||
		strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// A CSV that is not there is told as --csv's, once: "open PATH: no such
// file" named no flag.
func TestCampaignMissingCSVNamesTheFlag(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "none.csv")
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "run", "--tenant", "contoso", "--csv", missing}, &out, &errb)
	if want := "offboardctl: --csv " + missing + ": no such file or directory\n"; code != exitUsage || errb.String() != want {
		t.Errorf("exit %d, %q; want %d, %q", code, errb.String(), exitUsage, want)
	}
}

// TestCampaignPlanTooManyDays: --inactive-for past the days a duration
// holds is told as such; it read as "not a positive duration".
func TestCampaignPlanTooManyDays(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "plan", "--tenant", "contoso", "--inactive-for", "100000d"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), `--inactive-for "100000d": more than 99999 days`) {
		t.Errorf("exit %d, stderr %q: want %d and the days named", code, errb.String(), exitUsage)
	}
}

// TestCampaignPlanTooLongInHours: --inactive-for written in hours (or any
// Go unit) past what a duration holds is told as too long, as too many
// days are; it read as "not a positive duration", of a value that is.
func TestCampaignPlanTooLongInHours(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"9999999h", "+9999999h", "1000000000000s", "2562048h"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "plan", "--tenant", "contoso", "--inactive-for", v}, &out, &errb)
		if want := `--inactive-for "` + v + `": longer than a duration holds`; code != exitUsage || !strings.Contains(errb.String(), want) {
			t.Errorf("%s: exit %d, stderr %q: want %d and %q", v, code, errb.String(), exitUsage, want)
		}
	}
	// Not durations, or not positive: told so, as before.
	for _, v := range []string{"-9999999h", "9999999", "9999999x", "h"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "plan", "--tenant", "contoso", "--inactive-for", v}, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "is not a positive duration") {
			t.Errorf("%s: exit %d, stderr %q: want %d, not a positive duration", v, code, errb.String(), exitUsage)
		}
	}
}

// openTerminal opens a pseudo-terminal of cols columns (the test is
// skipped where there is none) and reads what is drawn on it: tty is the
// side a command writes to, shown what it drew so far, and closed closes
// tty and waits for the last of it.
func openTerminal(t *testing.T, cols uint16) (tty *os.File, shown func() string, closed func()) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close() })
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var screen bytes.Buffer
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	shown = func() string { mu.Lock(); defer mu.Unlock(); return screen.String() }
	return tty, shown, func() { _ = tty.Close(); wg.Wait() }
}
