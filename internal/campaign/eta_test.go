package campaign

import (
	"math"
	"testing"
	"time"
)

// Where the quota is not the limit (the worker's requests in flight are),
// the quota's pace says nothing of the end: the ETA is not known until a
// rate of answers is measured, and then it is the longer of that rate's
// and the quota's. It read 0s while 9842 rows waited.
func TestETAWhenTheQuotaIsNotTheLimit(t *testing.T) {
	t.Parallel()
	huge := []Window{{1000000, time.Minute}}
	e := Estimate{Ahead: 9842, Done: 5, Elapsed: 3 * time.Second, Windows: huge}
	if e.Known() {
		t.Errorf("ETA %v known before a rate is measured", e.ETA())
	}
	e.Done, e.Elapsed = 158, 10*time.Second
	// 9842 rows at 15.8 answers a second.
	if got, want := e.ETA(), 623*time.Second; !e.Known() || got.Round(time.Second) != want {
		t.Errorf("measured: ETA %v (known %t), want %v", got, e.Known(), want)
	}
	// The quota's ETA is known from the start where it is the limit, and
	// a rate measured faster than it allows does not shorten it.
	e = Estimate{Ahead: 1000, Windows: DefaultWindows}
	if got := e.ETA(); !e.Known() || got != DrainTime(1000, DefaultWindows) {
		t.Errorf("at the quota: ETA %v (known %t)", got, e.Known())
	}
	e.Done, e.Elapsed = 100, 10*time.Second
	if got := e.ETA(); got != DrainTime(1000, DefaultWindows) {
		t.Errorf("at the quota, a fast start measured: ETA %v, want the quota's %v", got, DrainTime(1000, DefaultWindows))
	}
	if e := (Estimate{Windows: huge}); !e.Known() || e.ETA() != 0 {
		t.Errorf("nothing left: ETA %v (known %t)", e.ETA(), e.Known())
	}
}

// A rate so slow that the rows left would take longer than a Duration
// holds gives the longest ETA there is. The cap was converted from a
// float64 that rounds up to 2^63, out of a Duration's range, which made it
// negative: the quota's far shorter ETA stood in for it (6666h for 10
// million rows answered 20 in 6 hours).
func TestETAOfARateTooSlowToTell(t *testing.T) {
	t.Parallel()
	e := Estimate{Ahead: 10_000_000, Done: 20, Elapsed: 6 * time.Hour, Windows: DefaultWindows}
	if got := e.ETA(); got != time.Duration(math.MaxInt64) {
		t.Errorf("ETA %v (%s), want the longest there is", got, Human(got))
	}
}

// A run's progress asks for the ETA every 200 ms, all the run long now
// that the quota's pace counts beside the measured rate, while the
// backlog it is counted over is read every 5 s: an estimate given a Pace
// counts the calls under the windows once per backlog, not at every ask
// (12 ms for a backlog of a million, twice before a rate is measured).
func TestETAOfAnUnchangedBacklogIsCountedOnce(t *testing.T) {
	var p Pace
	e := Estimate{Ahead: 1_000_000, Windows: DefaultWindows, Pace: &p}
	if got, want := e.ETA(), DrainTime(1_000_000, DefaultWindows); got != want {
		t.Fatalf("ETA %v, want the quota's %v", got, want)
	}
	if n := testing.AllocsPerRun(3, func() { _, _ = e.ETA(), e.Known() }); n != 0 {
		t.Errorf("the same backlog's ETA counted anew (%v allocations)", n)
	}
	e.Ahead, e.Windows = 1000, []Window{{10, time.Minute}}
	if got, want := e.ETA(), DrainTime(1000, e.Windows); got != want {
		t.Errorf("another backlog and windows: ETA %v, want %v", got, want)
	}
}

// The quota's time after the calls already made in its windows (a window
// full: 5 of 5/1m made, the wait left) is the ETA, and known, where the
// windows counted from empty gave 0s and an ETA not known; one shorter
// than from empty windows leaves that.
func TestETAAfterTheCallsMade(t *testing.T) {
	t.Parallel()
	e := Estimate{Ahead: 5, Windows: []Window{{5, time.Minute}}, Quota: 50 * time.Second}
	if got := e.ETA(); !e.Known() || got != 50*time.Second {
		t.Errorf("a window full: ETA %v (known %t), want 50s", got, e.Known())
	}
	e = Estimate{Ahead: 30, Windows: []Window{{10, time.Minute}}, Quota: time.Second}
	if got := e.ETA(); got != 2*time.Minute {
		t.Errorf("a quota time shorter than from empty windows: ETA %v, want 2m0s", got)
	}
}

// TestParseWindowsNamesTheWholeRate: a list with an empty limit in it (a
// comma left at the end) is named whole, and the empty part said so: the
// error named only the part, rate "", which the operator never typed.
func TestParseWindowsNamesTheWholeRate(t *testing.T) {
	for in, want := range map[string]string{
		"100/1m,":         `rate "100/1m,": an empty limit between commas; want COUNT/DURATION, as 100/1m,1500/1h`,
		",100/1m":         `rate ",100/1m": an empty limit between commas; want COUNT/DURATION, as 100/1m,1500/1h`,
		"100/1m,abc":      `rate "100/1m,abc": limit "abc" is not COUNT/DURATION, as 100/1m,1500/1h`,
		"abc":             `rate "abc": want COUNT/DURATION, as 100/1m,1500/1h`,
		"":                `rate "": want COUNT/DURATION, as 100/1m,1500/1h`,
		"100/1m,,1500/1h": `rate "100/1m,,1500/1h": an empty limit between commas; want COUNT/DURATION, as 100/1m,1500/1h`,
	} {
		_, err := ParseWindows(in)
		if err == nil || err.Error() != want {
			t.Errorf("ParseWindows(%q): %v\nwant %s", in, err, want)
		}
	}
}

// TestParseWindowsRefusesAWindowNoTenantHas: a window shorter than the
// tenants file allows (config.MinWindow) is no tenant's limit: --rate
// 5/1ms, typed for 5/1m, gave an ETA of 0s for any backlog, exit 0.
func TestParseWindowsRefusesAWindowNoTenantHas(t *testing.T) {
	for in, want := range map[string]string{
		"5/1ms":           `rate "5/1ms": limit "5/1ms" has a window shorter than 100ms, which no tenant's limits have; want COUNT/DURATION, as 100/1m,1500/1h`,
		"100/1m,1500/1ns": `rate "100/1m,1500/1ns": limit "1500/1ns" has a window shorter than 100ms, which no tenant's limits have; want COUNT/DURATION, as 100/1m,1500/1h`,
	} {
		_, err := ParseWindows(in)
		if err == nil || err.Error() != want {
			t.Errorf("ParseWindows(%q): %v\nwant %s", in, err, want)
		}
	}
	for _, in := range []string{"100/100ms", "100/1m,1500/1h"} {
		if _, err := ParseWindows(in); err != nil {
			t.Errorf("ParseWindows(%q): %v, want the windows", in, err)
		}
	}
}
