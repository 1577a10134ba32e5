package app

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// budgetJournalEnv starts a worker whose tenant contoso has a budget of
// 10/1h, with its gauges refreshed every 250ms.
func budgetJournalEnv(t *testing.T, logger *zap.Logger) *env {
	t.Helper()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 3, extra: "    guards:\n      budget: \"10/1h\"\n", noStart: true, logger: logger})
	e.opts.StatsEvery = 250 * time.Millisecond
	e.start()
	return e
}

// TestBudgetJournalGoneShowsInMetrics: the budget stream is deleted under
// a running worker with a budget in force. No request gets a slot, so no
// call and no result: the budget journal's write failures count it, and
// the quota journal's do not. Before, the budget journal had no metric at
// all, and its requests only showed as waiting (in flight, not held).
func TestBudgetJournalGoneShowsInMetrics(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := budgetJournalEnv(t, zap.New(core))
	eventually(t, 10*time.Second, "the budget journal read", func() bool {
		return metricValue(t, e, "mde_offboard_budget_journal_caught_up", nil) == 1
	})
	if err := e.js.DeleteStream(t.Context(), offboard.StreamBudget); err != nil {
		t.Fatal(err)
	}
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, 3)
	eventually(t, 10*time.Second, "the budget journal's write failures counted", func() bool {
		return metricValue(t, e, "mde_offboard_budget_journal_write_failures_total", nil) > 0
	})
	if v := metricValue(t, e, "mde_offboard_quota_journal_write_failures_total", nil); v != 0 {
		t.Errorf("mde_offboard_quota_journal_write_failures_total = %v, want 0: the quota journal is fine", v)
	}
	if n := res.resultsOf("contoso"); n != 0 {
		t.Errorf("%d results without the budget journal, want none", n)
	}
	if n := len(e.offboardCallsSince("contoso", time.Time{})); n != 0 {
		t.Errorf("%d offboard calls without the budget journal, want none", n)
	}
	// The failure is counted as the feed finds the stream gone, a moment
	// before a request's write fails and is logged.
	eventually(t, 10*time.Second, "a request left for redelivery", func() bool {
		return logs.FilterMessage("request left for redelivery").Len() > 0
	})
	wantNamed(t, logs, "request left for redelivery", "budget journal of tenant contoso")
}

// wantNamed checks that the log lines with message msg name the journal
// at fault (want, in their error), never the quota journal: the log is
// where an operator learns which stream to look at.
func wantNamed(t *testing.T, logs *observer.ObservedLogs, msg, want string) {
	t.Helper()
	lines := logs.FilterMessageSnippet(msg).All()
	if len(lines) == 0 {
		t.Fatalf("no log line %q", msg)
	}
	for _, l := range lines {
		text := l.Message
		for _, f := range l.Context {
			if f.Interface != nil {
				if err, ok := f.Interface.(error); ok {
					text += " " + err.Error()
				}
			}
		}
		if !strings.Contains(text, want) || strings.Contains(text, "quota journal") {
			t.Errorf("log %q, want it to name the %s and not the quota journal", text, want)
		}
	}
}

// TestUnreadableBudgetEntryShowsInMetrics: the budget journal holds an
// entry that cannot be read, so the tenant's requests are held as a spent
// budget holds them (mde_offboard_held_requests{reason="budget"}), though
// the budget has slots left. The budget journal's unreadable entries
// count it, which a deliberate hold never does. Before, nothing told the
// one hold from the other.
func TestUnreadableBudgetEntryShowsInMetrics(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := budgetJournalEnv(t, zap.New(core))
	if _, err := e.js.Publish(t.Context(), offboard.Subjects{}.Budget("contoso"), []byte(`{"w":`)); err != nil {
		t.Fatal(err)
	}
	e.offboardEach("contoso", "c", 0, 3)
	held := map[string]string{"tenant": "contoso", "reason": "budget"}
	eventually(t, 10*time.Second, "the requests held", func() bool { return metricValue(t, e, "mde_offboard_held_requests", held) == 3 })
	if v := metricValue(t, e, "mde_offboard_budget_remaining", map[string]string{"tenant": "contoso"}); v != 10 {
		t.Errorf("mde_offboard_budget_remaining = %v, want 10: no slot was taken", v)
	}
	if v := metricValue(t, e, "mde_offboard_budget_journal_unreadable_entries_total", nil); v != 1 {
		t.Errorf("mde_offboard_budget_journal_unreadable_entries_total = %v, want 1", v)
	}
	if v := metricValue(t, e, "mde_offboard_quota_journal_unreadable_entries_total", nil); v != 0 {
		t.Errorf("mde_offboard_quota_journal_unreadable_entries_total = %v, want 0: the quota journal is fine", v)
	}
	wantNamed(t, logs, "unreadable", "budget journal")
}
