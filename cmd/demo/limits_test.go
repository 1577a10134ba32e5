package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
)

// TestLimitsLineIsTrue: the limits line the demo prints at its start names
// the windows the simulator and the worker use and the documented ones they
// stand in for, and a speed-up it claims holds for every window (the same
// count in a window that many times shorter).
func TestLimitsLineIsTrue(t *testing.T) {
	line := limitsLine()
	for _, w := range demoWindows {
		spelled := strconv.Itoa(w.Count) + "/" + limiter.Window{Count: w.Count, Length: w.Length}.Label()
		if !strings.Contains(line, spelled) {
			t.Errorf("limits line %q does not name the demo's window %s", line, spelled)
		}
		if !strings.Contains(demoLimitsYAML(), `"`+spelled+`"`) {
			t.Errorf("the tenants file's limits %s do not hold the simulator's window %s", demoLimitsYAML(), spelled)
		}
	}
	for _, w := range limiter.Default() {
		if spelled := strconv.Itoa(w.Count) + "/" + w.Label(); !strings.Contains(line, spelled) {
			t.Errorf("limits line %q does not name the documented window %s", line, spelled)
		}
	}
	if m := regexp.MustCompile(`(\d+)x faster`).FindStringSubmatch(line); m != nil {
		n, _ := strconv.Atoi(m[1])
		for i, real := range limiter.Default() {
			if d := demoWindows[i]; d.Count != real.Count || d.Length*time.Duration(n) != real.Length {
				t.Errorf("limits line %q: %d/%v is not %d/%v %sx faster", line, d.Count, d.Length, real.Count, real.Length, m[1])
			}
		}
	}
}
