package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusSaysWhenNoWorkerServesATenant: with requests waiting and no
// worker running (the last one stopped, or one died without a word and
// its announcement went stale), status says so below the table, and
// noWorker in its JSON: the ETA it shows is what the backlog takes once a
// worker runs. It showed the ETA alone, as if a worker drained the
// backlog.
func TestStatusSaysWhenNoWorkerServesATenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	e.stopWorker() // it withdraws its announcement
	for i, m := range e.machines {
		body := fmt.Sprintf(`{"requestId":"nw-%d","machineId":"%s"}`, i, m.ID)
		if _, err := e.js.Publish(t.Context(), offboard.Subjects{}.Request(tenant, offboard.Normal), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := e.ctl(t.Context(), "status", tenant)
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	if want := tenant + ": no worker has announced it: nothing works its requests"; !strings.Contains(out, want) {
		t.Errorf("status says:\n%s\nwant the line %q", out, want)
	}
	_, out, _ = e.ctl(t.Context(), "status", "--json")
	if !strings.Contains(out, `"noWorker": true`) {
		t.Errorf("status --json says:\n%s\nwant noWorker true", out)
	}

	e.startWorker()
	e.waitFor("the backlog drained", 20*time.Second, func() bool { return e.requestsWaiting() == 0 })
	c := &cli{js: e.js, timeout: 10 * time.Second, subjects: offboard.Subjects{}}
	now := time.Now()
	sts, err := c.status(t.Context(), tenant, now)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].NoWorker || sts[0].LastAnnounced == nil {
		t.Errorf("with a worker running: noWorker %t, lastAnnounced %v; want false and a time", sts[0].NoWorker, sts[0].LastAnnounced)
	}
	// The same announcement, two minutes later by this clock: its worker
	// died without withdrawing it.
	later := now.Add(2 * time.Minute)
	if sts, err = c.status(t.Context(), tenant, later); err != nil {
		t.Fatal(err)
	}
	if !sts[0].NoWorker || sts[0].LastAnnounced == nil {
		t.Fatalf("two minutes on: noWorker %t, lastAnnounced %v; want true and a time", sts[0].NoWorker, sts[0].LastAnnounced)
	}
	var b bytes.Buffer
	printTable(&b, sts, later)
	if want := tenant + ": no worker has announced it for 2m"; !strings.Contains(b.String(), want) {
		t.Errorf("status says:\n%s\nwant a line starting %q", b.String(), want)
	}
}

// TestCampaignStatusSaysWhenNoWorkerServesTheTenant: campaign status of
// a campaign whose requests wait while no worker runs says so under its
// ETA, and noWorker in its JSON, as status does: the ETA is what the
// requests take once a worker runs. It showed the ETA alone, as if a
// worker were at them.
func TestCampaignStatusSaysWhenNoWorkerServesTheTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	e.stopWorker() // it withdraws its announcement
	e.publishCampaign(t, "nw")
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "nw")
	if code != exitOK {
		t.Fatalf("campaign status: exit %d, stderr %q", code, errs)
	}
	if want := "no worker has announced tenant " + tenant + ": nothing works its requests"; !strings.Contains(out, want) {
		t.Errorf("campaign status says:\n%s\nwant a line with %q", out, want)
	}
	_, out, _ = e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "nw", "--json")
	if !strings.Contains(out, `"noWorker": true`) {
		t.Errorf("campaign status --json says:\n%s\nwant noWorker true", out)
	}

	// A worker running, the requests held by a pause: no such line.
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "bulk"); code != exitOK {
		t.Fatalf("pause: exit %d, stderr %q", code, errs)
	}
	e.startWorker()
	e.waitFor("the worker's announcement", 20*time.Second, func() bool {
		_, out, _ = e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "nw")
		return strings.Contains(out, "waiting    3") && !strings.Contains(out, "no worker")
	})
}

// noWorkerNote ends a campaign run's progress line while no worker has
// announced the tenant.
const noWorkerNote = "; no worker has announced the tenant: the ETA counts once one runs"

// TestCampaignRunSaysWhenNoWorkerServesTheTenant: a campaign run whose
// rows wait while no worker runs says so in its progress, after the ETA,
// which is what they take once one runs: it showed that time alone (ETA
// 2m00s for 30 rows at 10/1m), the same at every line, as if a worker
// were at them. With a worker running, the progress does not say so.
func TestCampaignRunSaysWhenNoWorkerServesTheTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	e.stopWorker() // it withdraws its announcement
	csvPath := writeFile(t, e.dir, "nwrun.csv", numberedCSV(30))
	run := func() string {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", filepath.Join(e.dir, "nwrun-report.csv"),
			"--rate", "10/1m", "--progress-every", "100ms", "--timeout", "2s")
		if code != exitFailed {
			t.Fatalf("campaign run: exit %d, want 1 (--timeout): stderr %q", code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return lines[len(lines)-2] // the last progress line, before the summary
	}
	if line, want := run(), "ETA 2m00s"+noWorkerNote; !strings.HasSuffix(line, want) {
		t.Errorf("with no worker, the progress says:\n%s\nwant it to end %q", line, want)
	}

	// A worker running, the rows held by a pause.
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "bulk"); code != exitOK {
		t.Fatalf("pause: exit %d, stderr %q", code, errs)
	}
	e.startWorker()
	e.waitFor("the worker's announcement", 20*time.Second, func() bool {
		_, out, _ := e.ctl(t.Context(), "status", tenant)
		return !strings.Contains(out, "no worker")
	})
	if line := run(); !strings.HasSuffix(line, "ETA paused") {
		t.Errorf("with a worker running and the rows paused, the progress says:\n%s\nwant ETA paused", line)
	}
}

// TestCampaignCancelSaysWhenNoWorkerServesTheTenant: campaign cancel of
// requests waiting while no worker runs says that none is answered
// before one runs, as it says when a pause holds them. It said they
// would be answered cancelled, and nothing came.
func TestCampaignCancelSaysWhenNoWorkerServesTheTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	e.stopWorker() // it withdraws its announcement
	e.publishCampaign(t, "nwc")
	code, out, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "nwc")
	if want := "3 requests waiting will be answered cancelled; no worker has announced the tenant: none is answered before one runs; 0 answered so far"; code != exitOK || !strings.Contains(out, want) {
		t.Errorf("campaign cancel: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errs, want)
	}
}

// publishCampaign publishes a bulk request of campaign name for each of
// the machines, as campaign run does.
func (e *testEnv) publishCampaign(t *testing.T, name string) {
	t.Helper()
	for i, m := range e.machines {
		id := campaign.RequestID(name, i+1)
		body := fmt.Sprintf(`{"requestId":"%s","machineId":"%s","source":"%s"}`, id, m.ID, campaign.Source(name))
		if _, err := e.js.Publish(t.Context(), offboard.Subjects{}.Request(tenant, offboard.Bulk), []byte(body),
			jetstream.WithMsgID(offboard.RequestMsgID(tenant, id, 1))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeadRetrySaysWhenNoWorkerServesTheTenant: dead retry of a tenant
// no worker has announced says that its retries are not answered before
// one serves it, as it says when a pause holds them. It said "retried",
// and no result came; with a worker serving the tenant it says nothing
// more.
func TestDeadRetrySaysWhenNoWorkerServesTheTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	// No device has this name: failed, with a dead letter.
	body := `{"requestId":"nw-1","computerDnsName":"gone.contoso.local"}`
	if _, err := e.js.Publish(t.Context(), offboard.Subjects{}.Request(tenant, offboard.Normal), []byte(body)); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the request's result", 20*time.Second, func() bool { return len(e.results()) == 1 })
	e.stopWorker() // it withdraws its announcement
	const want = "1 of them waits for a worker: no worker has announced tenant " + tenant
	code, out, errs := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "retried nw-1 attempt 2") || !strings.Contains(out, want) {
		t.Errorf("dead retry with no worker: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errs, want)
	}

	e.startWorker()
	e.waitFor("the retry answered", 20*time.Second, func() bool { return len(e.results()) == 2 && e.requestsWaiting() == 0 })
	code, out, errs = e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "retried nw-1 attempt 3") || strings.Contains(out, "no worker") {
		t.Errorf("dead retry with a worker: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
