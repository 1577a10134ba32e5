package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCampaignPlanDaysWithOtherUnits: --inactive-for takes Go durations
// with d for days as a unit like the others (the contract's "Go
// durations, plus d for days"): 1d12h and 1.5d are 36 hours, and the
// plan asks for that. They were refused as no duration ("not a positive
// duration such as 90d"), exit 2.
func TestCampaignPlanDaysWithOtherUnits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, v := range []string{"1d12h", "1.5d", "12h1d", "1d720m"} {
		f := planFlags{tenant: "contoso", inactiveFor: v, timeout: time.Minute, out: filepath.Join(dir, v+".csv")}
		req, err := f.request()
		if err != nil || req.InactiveFor != 36*time.Hour {
			t.Errorf("--inactive-for %s: %v, %v; want 36h", v, req.InactiveFor, err)
		}
	}
	// Not durations, or not positive: still bad usage.
	for _, v := range []string{"1d-12h", "-1d12h", "1 d", "1dd", "0d0h"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "plan", "--tenant", "contoso", "--inactive-for", v, "--out", filepath.Join(dir, "x.csv")}, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "is not a positive duration") {
			t.Errorf("--inactive-for %q: exit %d, stderr %q; want %d", v, code, errb.String(), exitUsage)
		}
	}
}
