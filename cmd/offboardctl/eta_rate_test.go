package main

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
)

// At a quota far above what the worker answers (its requests in flight
// are the limit), the progress says the ETA is unknown until a rate of
// answers is measured, then gives the ETA at that rate. It read "ETA 0s"
// while 9842 rows waited.
func TestCampaignProgressETAWhenTheQuotaIsNotTheLimit(t *testing.T) {
	t.Parallel()
	r := &campaignRun{f: runFlags{tenant: tenant, name: "wave"}, windows: []campaign.Window{{Count: 1000000, Length: time.Minute}}}
	r.ahead.Store(9842)
	r.aheadRead.Store(true)
	c := campaign.Counts{Rows: 20000, Created: 10158, Waiting: 9842}
	if line := r.snapshot(c, 10, 2*time.Second).line(); !strings.HasSuffix(line, "; ETA unknown") {
		t.Errorf("before a rate is measured: %q", line)
	}
	if line := r.snapshot(c, 158, 10*time.Second).line(); !strings.HasSuffix(line, "; ETA 10m23s") {
		t.Errorf("158 answers in 10s: %q, want ETA 10m23s", line)
	}
}
