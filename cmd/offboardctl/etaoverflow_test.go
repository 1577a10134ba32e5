package main

import (
	"math"
	"strings"
	"testing"
	"time"

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
