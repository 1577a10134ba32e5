package offboard

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// DrainTime gives the earliest schedule the windows allow: checked against
// a count of every window's calls, minute by minute of simulated time.
func TestDrainTime(t *testing.T) {
	t.Parallel()
	def := []PlanLimit{{100, time.Minute}, {1500, time.Hour}}
	for n, want := range map[int]time.Duration{
		0: 0, 1: 0, 100: 0, 101: time.Minute, 1500: 14 * time.Minute, 1501: time.Hour,
		1600: time.Hour, 1601: time.Hour + time.Minute, 3000: time.Hour + 14*time.Minute, 3001: 2 * time.Hour,
	} {
		if got := DrainTime(def, n); got != want {
			t.Errorf("DrainTime(100/1m+1500/1h, %d) = %v, want %v", n, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		limits := []PlanLimit{{1 + r.IntN(10), time.Duration(1+r.IntN(5)) * time.Minute}, {1 + r.IntN(40), time.Duration(1+r.IntN(60)) * time.Minute}}
		n := 1 + r.IntN(300)
		if got, want := DrainTime(limits, n), earliest(limits, n); got != want {
			t.Fatalf("DrainTime(%v, %d) = %v, want %v", limits, n, got, want)
		}
	}
	// Past what a Duration holds, or too many calls to count: the longest.
	for _, tc := range []struct {
		limits []PlanLimit
		n      int
	}{
		{[]PlanLimit{{1, 2562047 * time.Hour}}, 3},
		{[]PlanLimit{{100, time.Minute}, {1, 1000000 * time.Hour}}, 5},
		{def, MaxDrainCalls + 1},
		{def, math.MaxInt},
	} {
		if got := DrainTime(tc.limits, tc.n); got != math.MaxInt64 {
			t.Errorf("DrainTime(%v, %d) = %v, want the longest", tc.limits, tc.n, got)
		}
	}
}

// earliest schedules n calls minute by minute (every window a whole number
// of minutes), each as soon as every window has room: a call at minute m
// counts in a window of length L until minute m+L.
func earliest(limits []PlanLimit, n int) time.Duration {
	var starts []int
	for m := 0; ; m++ {
		for len(starts) < n && fits(limits, starts, m) {
			starts = append(starts, m)
		}
		if len(starts) == n {
			return time.Duration(starts[n-1]) * time.Minute
		}
	}
}

func fits(limits []PlanLimit, starts []int, m int) bool {
	for _, l := range limits {
		in := 0
		for _, s := range starts {
			if m < s+int(l.Window/time.Minute) {
				in++
			}
		}
		if in >= l.Count {
			return false
		}
	}
	return true
}
