package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestETANeverWrapsAround: a backlog that would take longer than a
// time.Duration holds (a budget of one a day, three hundred thousand
// waiting) is shown as the longest one, not wrapped around to below zero,
// which status shows as "now".
func TestETANeverWrapsAround(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{150_000, etaCap, etaCap + 1, 300_000, 1 << 40} {
		if d := eta([]limiter.Window{{Count: 1, Length: 24 * time.Hour}}, nil, n, now); d < 100*365*24*time.Hour {
			t.Errorf("%d waiting at one a day: ETA %v, want the longest there is", n, d)
		}
	}
}

// TestETACellOfTheLongest: status shows the longest ETA there is as a
// duration, not wrapped around on its way back from seconds.
func TestETACellOfTheLongest(t *testing.T) {
	t.Parallel()
	secs := time.Duration(math.MaxInt64).Seconds()
	st := tenantStatus{ETA: &secs, Backlog: map[offboard.Priority]uint64{offboard.Normal: 300_000}}
	if got := etaCell(st); strings.HasPrefix(got, "-") || got == "now" {
		t.Errorf("ETA cell %q, want the longest duration", got)
	}
}

// TestCampaignBudgetETAPastTheYear2262: campaign run's ETA by a budget
// that ends after the last instant a Unix time in nanoseconds holds (one
// a day, two hundred thousand ahead: year 2574) is the longest, by the
// budget. Its end wrapped around to before 1970, and the progress showed
// the quota's ETA, as if the budget held nothing. The longest is status's,
// as long as a Duration goes (292 years), not the time left until 2262
// (236 years from 2026), which status and campaign run told apart.
func TestCampaignBudgetETAPastTheYear2262(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 1, 1)
	c, js := e.connected()
	view, h, err := readControls(t.Context(), js, c.subjects)
	if err != nil {
		t.Fatal(err)
	}
	r := &campaignRun{c: c, f: runFlags{tenant: tenant}, js: js, prio: offboard.Bulk}
	r.refreshBudget(t.Context(), view, h, 200_000, 0)
	s := r.snapshot(campaign.Counts{Rows: 1, Waiting: 1}, 0, time.Second)
	if !s.byBudget || s.eta != math.MaxInt64 {
		t.Errorf("ETA %v (by budget %v), want the longest, %v, by the budget", s.eta, s.byBudget, time.Duration(math.MaxInt64))
	}
}

// TestStatusETAWrittenAsCampaignRunWritesIt: status writes an ETA in the
// form campaign run's progress and campaign status use (58m06s, 2h05m),
// not Go's (58m6s, 2h5m0s), so one backlog reads alike in all three.
func TestStatusETAWrittenAsCampaignRunWritesIt(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		eta  time.Duration
		want string
	}{
		{58*time.Minute + 6*time.Second, "58m06s"},
		{2*time.Hour + 5*time.Minute, "2h05m"},
		{24 * time.Hour, "24h00m"},
		{12 * time.Second, "12s"},
	} {
		secs := c.eta.Seconds()
		st := tenantStatus{ETA: &secs, Backlog: map[offboard.Priority]uint64{offboard.Bulk: 10}}
		if got := etaCell(st); got != c.want || got != campaign.Human(c.eta) {
			t.Errorf("status ETA cell for %v: %q, want %q as campaign run writes it", c.eta, got, c.want)
		}
	}
}
