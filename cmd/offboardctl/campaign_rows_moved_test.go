package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A campaign run again under its name with a CSV that lists a device at
// another row than its earlier request (an invalid row deleted) is
// refused before anything is published: the device's row has a new
// request id, which nothing answered yet, and publishing it would
// offboard the device a second time. The very same CSV, which lists a
// device twice, goes on and publishes nothing.
func TestRerunWithADeviceAtAnotherRowRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	a, b := e.machines[0].ID, e.machines[1].ID
	dir := t.TempDir()
	run := func(file, body string) (int, string, string) {
		return e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", writeFile(t, dir, file, body),
			"--name", "wave", "--report", filepath.Join(dir, file+"-report.csv"))
	}
	first := "machineId\n" + a + "\nnot-an-id\n" + b + "\n" + a + "\n"
	if code, out, errs := run("first.csv", first); code != exitOK {
		t.Fatalf("first run: exit %d: %s %s", code, out, errs)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 2 {
		t.Fatalf("%d actions after the first run, want 2", n)
	}
	published := e.lastSeq()
	if code, out, errs := run("same.csv", first); code != exitOK {
		t.Errorf("the same CSV again: exit %d: %s %s", code, out, errs)
	}
	code, _, errs := run("moved.csv", "machineId\n"+a+"\n"+b+"\n")
	if code != exitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "new --name") ||
		!strings.Contains(errs, "row 2") || !strings.Contains(errs, "wave-000003") || !strings.Contains(errs, b) {
		t.Errorf("device moved to row 2: exit %d, stderr %q", code, errs)
	}
	if n := e.lastSeq(); n != published {
		t.Errorf("%d requests published after the first run", n-published)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 2 {
		t.Errorf("%d actions, want 2", n)
	}
}

// The same while the earlier run's request of the device still waits
// (no worker): the row's new request would be a second one for it.
func TestRerunWithADeviceAtAnotherRowWhileItsRequestWaits(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	for _, r := range []struct {
		row    int
		device string
	}{{1, a}, {3, b}} {
		m := nats.NewMsg("mde.offboard.request.contoso.bulk")
		m.Data = fmt.Appendf(nil, `{"requestId":"wave-%06d","machineId":"%s","source":"campaign:wave"}`, r.row, r.device)
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("contoso:wave-%06d", r.row))
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	published := lastRequestSeq(t, js)
	code, _, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, "moved.csv", "machineId\n"+a+"\n"+b+"\n"),
		"--name", "wave", "--report", filepath.Join(dir, "moved-report.csv"), "--timeout", "1s")
	if code != exitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "new --name") ||
		!strings.Contains(errs, "row 2") || !strings.Contains(errs, "wave-000003") || !strings.Contains(errs, b) {
		t.Errorf("device moved to row 2: exit %d, stderr %q", code, errs)
	}
	if n := lastRequestSeq(t, js); n != published {
		t.Errorf("%d requests published", n-published)
	}
	same := writeFile(t, dir, "same.csv", "machineId\n"+a+"\nnot-an-id\n"+b+"\n")
	if code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", same, "--name", "wave",
		"--report", filepath.Join(dir, "same-report.csv"), "--timeout", "1s"); code != exitFailed {
		t.Errorf("the same CSV: exit %d, want 1 (no worker: timeout), stdout %q, stderr %q", code, out, errs)
	}
}

// A request that merely has the id form of a campaign's row, from another
// source (a CMDB's inc-004711 for a device the campaign inc lists), is no
// earlier run of the campaign: the run is not refused for it, and its
// rows are published (the cancel spares such a request the same way).
func TestRerunCheckSparesARequestWithTheCampaignsIDForm(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	m := nats.NewMsg("mde.offboard.request.contoso")
	m.Data = fmt.Appendf(nil, `{"requestId":"inc-004711","machineId":"%s","source":"servicenow:INC4711"}`, b)
	m.Header.Set(jetstream.MsgIDHeader, "contoso:inc-004711")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	published := lastRequestSeq(t, js)
	res := runUntilPublished(t, url, js, 2, "campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, "inc.csv", "machineId\n"+a+"\n"+b+"\n"),
		"--name", "inc", "--report", filepath.Join(dir, "inc-report.csv"))
	if res.code == exitUsage || strings.Contains(res.err, "new --name") {
		t.Errorf("refused for another source's request: exit %d, stderr %q", res.code, res.err)
	}
	if n := lastRequestSeq(t, js); n != published+2 {
		t.Errorf("%d requests published, want the CSV's 2", n-published)
	}
}

// TestRerunWithRowsCutWhileTheirRequestsWait: a campaign run again with
// its CSV cut short while requests of the rows cut still wait (a paused
// tenant, a long backlog) is refused, exit 2, before anything is
// published: those requests still offboard their devices, which the
// operator took out of the CSV, and no report tells their outcome. The
// run published the CSV's rows and ended as if the campaign were whole.
func TestRerunWithRowsCutWhileTheirRequestsWait(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b, c := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
	// Row 3 of an earlier run, of the campaign's source, waits.
	publishRaw(t, js, "mde.offboard.request.contoso.bulk", "contoso:cut-000003",
		fmt.Sprintf(`{"requestId":"cut-000003","machineId":"%s","source":"campaign:cut"}`, c))
	published := lastRequestSeq(t, js)
	dir := t.TempDir()
	code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, "cut.csv", "machineId\n"+a+"\n"+b+"\n"),
		"--report", filepath.Join(dir, "cut-report.csv"), "--timeout", "2s")
	if code != exitUsage || !strings.Contains(errs, "row 3 (cut-000003)") || strings.Count(errs, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and one line naming row 3", code, out, errs, exitUsage)
	}
	if n := lastRequestSeq(t, js); n != published {
		t.Errorf("%d requests published, want none", n-published)
	}
	// Cancelled, the campaign's request waiting offboards nothing: the
	// run goes on, and reports its rows cancelled.
	if code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", "contoso", "--name", "cut"); code != exitOK {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", filepath.Join(dir, "cut.csv"),
		"--report", filepath.Join(dir, "cut-report.csv"), "--timeout", "10s")
	if code != exitOK || !strings.Contains(out, "failed 2, no result 0") {
		t.Errorf("the cancelled campaign: exit %d, stdout %q, stderr %q; want its 2 rows reported cancelled", code, out, errs)
	}
}

// TestRerunWithRowsCutWhoseRequestsWereAnswered: a row cut from the CSV
// whose request was answered but is still in the request stream (the
// worker stopped between its ack and its delete, which the sweep makes
// up for within 10 minutes) offboards nothing more: the run goes on.
// Such a row was refused as a request still waiting, exit 2.
func TestRerunWithRowsCutWhoseRequestsWereAnswered(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	body := "machineId\n"
	for n := 1; n <= 3; n++ {
		id, device := fmt.Sprintf("gone-%06d", n), strings.Repeat(fmt.Sprint(n), 40)
		publishRaw(t, js, "mde.offboard.request.contoso.bulk", "contoso:"+id,
			fmt.Sprintf(`{"requestId":"%s","machineId":"%s","source":"campaign:gone"}`, id, device))
		seq := lastRequestSeq(t, js)
		publishRaw(t, js, "mde.offboard.result.contoso", "result:contoso:"+id,
			fmt.Sprintf(`{"requestId":"%s","tenant":"contoso","machineId":"%s","outcome":"created","attempt":1,"requestSeq":%d}`, id, device, seq))
		if n < 3 {
			body += device + "\n"
		}
	}
	// Rows 1 and 2 answered and deleted; row 3 answered, left in the stream.
	s, err := js.Stream(t.Context(), "MDE_OFFBOARD_REQUESTS")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if err := s.DeleteMsg(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, "gone.csv", body),
		"--report", filepath.Join(dir, "gone-report.csv"), "--timeout", "10s")
	if code != exitOK || !strings.Contains(out, "created 2") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and the 2 rows' results", code, out, errs, exitOK)
	}
}

// TestRerunWithRowsCutWhoseDryRunRequestsWait: a row cut from the CSV of
// a dry run, whose --dry-run request still waits, offboards nothing: the
// dry run again with the CSV cut goes on. It was refused, exit 2, saying
// that request would still offboard its device.
func TestRerunWithRowsCutWhoseDryRunRequestsWait(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	body := "machineId\n"
	for n := 1; n <= 2; n++ {
		id, device := fmt.Sprintf("try-%06d", n), strings.Repeat(fmt.Sprint(n), 40)
		publishRaw(t, js, "mde.offboard.result.contoso", "result:contoso:"+id,
			fmt.Sprintf(`{"requestId":"%s","tenant":"contoso","machineId":"%s","outcome":"dry_run","attempt":1}`, id, device))
		body += device + "\n"
	}
	publishRaw(t, js, "mde.offboard.request.contoso.bulk", "contoso:try-000003",
		fmt.Sprintf(`{"requestId":"try-000003","machineId":"%s","source":"campaign:try","dryRun":true}`, strings.Repeat("3", 40)))
	published := lastRequestSeq(t, js)
	code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--dry-run", "--csv", writeFile(t, dir, "try.csv", body),
		"--report", filepath.Join(dir, "try-report.csv"), "--timeout", "10s")
	if code != exitOK || !strings.Contains(out, "dry_run 2") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and the 2 rows' results", code, out, errs, exitOK)
	}
	if n := lastRequestSeq(t, js); n != published {
		t.Errorf("%d requests published, want none", n-published)
	}
}

// TestRerunWithARowCutInTheMiddleWhileItsRequestWaits: a row cut from the
// middle of the CSV while its request waits moves the rows after it up
// one, and the run is refused for the row whose waiting request names
// another device. That request still offboards the device cut: the
// refusal says so, and how to withdraw it, not only to give the CSV a new
// --name, after which the device cut was offboarded with no report.
func TestRerunWithARowCutInTheMiddleWhileItsRequestWaits(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b, c := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
	for n, device := range []string{a, b, c} {
		id := fmt.Sprintf("mid-%06d", n+1)
		publishRaw(t, js, "mde.offboard.request.contoso.bulk", "contoso:"+id,
			fmt.Sprintf(`{"requestId":"%s","machineId":"%s","source":"campaign:mid"}`, id, device))
	}
	published := lastRequestSeq(t, js)
	dir := t.TempDir()
	code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, "mid.csv", "machineId\n"+a+"\n"+c+"\n"),
		"--report", filepath.Join(dir, "mid-report.csv"), "--timeout", "2s")
	if code != exitUsage || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "row 2 (mid-000002)") || !strings.Contains(errs, b) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %d and one line naming row 2 and its device", code, out, errs, exitUsage)
	}
	if !strings.Contains(errs, "will still offboard") || !strings.Contains(errs, "offboardctl campaign cancel") {
		t.Errorf("stderr %q: want it to say the waiting request still offboards its device, and how to withdraw it", errs)
	}
	if n := lastRequestSeq(t, js); n != published {
		t.Errorf("%d requests published, want none", n-published)
	}
}
