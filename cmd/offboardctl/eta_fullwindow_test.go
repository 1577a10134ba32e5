package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignETAWhileTheWindowIsFull: with the tenant's window spent
// (5 calls of 5/1m made, 5 rows waiting for the window to pass), the
// campaign's ETA is the wait for the window, as offboardctl status reads
// it from the quota journal, in campaign status and in a run's progress
// alike. Counted from empty windows, both read 0s (the run: unknown), and
// the ETA grew as the wait went on.
func TestCampaignETAWhileTheWindowIsFull(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 10, 0, "5/1m")
	e.startWorker()
	p := writeFile(t, t.TempDir(), "wave.csv", idsCSV(e.machines))
	if code, _, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", p, "--name", "wave",
		"--report", p+".report", "--timeout", "2s"); code != exitFailed {
		t.Fatalf("campaign run: exit %d, want %d (its --timeout): %s", code, exitFailed, errs)
	}
	e.waitFor("5 results", 30*time.Second, func() bool { return len(e.results()) >= 5 })
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("campaign status: exit %d, %v: %s %s", code, err, out, errs)
	}
	// The window passes a minute after the first 5 calls: less the time
	// since, which is seconds.
	secs := -1.0
	if st.ETASeconds != nil {
		secs = *st.ETASeconds
	}
	if st.Answered != 5 || st.Waiting != 5 || secs < 30 || secs > 60 {
		t.Errorf("campaign status: answered %d, waiting %d, ETA %q (%.1f s); want 5, 5 and the minute's wait, 30 to 60 s",
			st.Answered, st.Waiting, st.ETA, secs)
	}

	// A run's progress, at its read of the backlog. refreshAhead bounds
	// its reads to 2 s together, which a loaded machine can take (a
	// progress then keeps the last estimate, or none): read again until
	// the backlog and the quota journal were both read.
	c, js := e.connected()
	r := &campaignRun{c: c, f: runFlags{tenant: tenant, name: "wave"}, js: js, prio: offboard.Bulk,
		windows: []campaign.Window{{Count: 5, Length: time.Minute}}}
	e.waitFor("the backlog and the quota journal read", 30*time.Second, func() bool {
		r.refreshAhead(t.Context())
		return r.aheadRead.Load() && r.quota.Load() != nil
	})
	s := r.snapshot(campaign.Counts{Rows: 10, Created: 5, Waiting: 5}, 5, 2*time.Second)
	if s.etaUnknown || s.eta < 30*time.Second || s.eta > time.Minute {
		t.Errorf("progress: %q; want the minute's wait, 30 to 60 s", s.line())
	}
}

// TestCampaignETAUnknownUntilTheBacklogIsRead: a run whose reads of the
// backlog have not finished yet (NATS slow to answer within
// refreshAhead's bound of 2 s, here a context already over) knows
// nothing of what is ahead of its rows: its progress says the ETA is
// unknown. It read "ETA 0s" while the rows waited behind a full window,
// the backlog counted as empty.
func TestCampaignETAUnknownUntilTheBacklogIsRead(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 1, 0, "5/1m")
	c, js := e.connected()
	r := &campaignRun{c: c, f: runFlags{tenant: tenant, name: "wave"}, js: js, prio: offboard.Bulk,
		windows: []campaign.Window{{Count: 5, Length: time.Minute}}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r.refreshAhead(ctx)
	s := r.snapshot(campaign.Counts{Rows: 10, Created: 5, Waiting: 5}, 5, 2*time.Second)
	if !s.etaUnknown {
		t.Errorf("progress before the backlog was read: %q; want the ETA unknown", s.line())
	}
}
