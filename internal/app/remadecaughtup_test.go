package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestJournalMadeAnewShowsInMetrics: the quota journal is deleted under a
// running replica A and made anew by the next replica's setup. A makes no
// call until it is restarted (/readyz says so) and stands aside, so it
// writes nothing more: its journal metrics must keep saying that it cannot
// use the journal, which MdeOffboardQuotaJournalUnavailable pages on after
// 5 minutes. Before, mde_offboard_quota_journal_caught_up stayed 1 and the
// write failures rose once, at the look that found the journal deleted:
// the alert, which asks for failures in two 5-minute windows in a row,
// never fired for a replica that would not call again until restarted.
func TestJournalMadeAnewShowsInMetrics(t *testing.T) {
	t.Parallel()
	names := numberedTenants(2)
	e := setup(t, envConfig{tenants: names, machines: 1, noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	e.opts.ReplicaID = "replica-a"
	e.start()
	e.waitCanCall("replica-a")
	a := e.app
	if v := metricValue(t, e, "mde_offboard_quota_journal_caught_up", nil); v != 1 {
		t.Fatalf("caught up %v before the journal was deleted, want 1", v)
	}
	if err := e.js.DeleteStream(t.Context(), offboard.StreamQuota); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "A found its journal deleted", func() bool { return a.shared.Healthy() != nil })
	e.opts.ReplicaID = "replica-b"
	e.startReplica(names...)
	e.waitCanCall("replica-b")
	if err := a.shared.Healthy(); err == nil {
		t.Fatal("A healthy again before a restart")
	}
	if v := metricValue(t, e, "mde_offboard_quota_journal_caught_up", nil); v != 0 {
		t.Errorf("A's mde_offboard_quota_journal_caught_up = %v while it makes no call until restarted, want 0", v)
	}
}
