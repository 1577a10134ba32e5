package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestETAWindowsWhenTheConsumerCannotBeRead: the tenant's recorded limits
// that cannot be read (here a connection closed; a timeout, or a user
// without the right to read consumer information, alike) leave the
// documented windows and one line on stderr, and fail neither a
// campaign's run nor its status: the ETA is only an estimate.
func TestETAWindowsWhenTheConsumerCannotBeRead(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	nc.Close()
	var stderr bytes.Buffer
	c := &cli{stderr: &stderr}
	ws := c.campaignWindows(t.Context(), js, "contoso", nil)
	if !slices.Equal(ws, campaign.DefaultWindows) {
		t.Errorf("windows %v, want the documented %v", ws, campaign.DefaultWindows)
	}
	if got := stderr.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "the ETA is at the documented 100/1m + 1500/1h") {
		t.Errorf("stderr %q, want one line saying the ETA is at the documented limits", got)
	}
	// Nor can the quota journal be read: the windows count from empty.
	stderr.Reset()
	if d := c.campaignQuota(t.Context(), js, "contoso", ws, 5, 0, time.Now()); d != 0 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "the ETA counts the quota windows from empty") {
		t.Errorf("quota time %v, stderr %q; want 0 and one line saying the windows count from empty", d, stderr.String())
	}
	r := &campaignRun{c: c, js: js, f: runFlags{tenant: "contoso"}, windows: ws}
	r.quota.Store(&etaRead{at: time.Now(), eta: time.Hour})
	if r.refreshQuota(t.Context(), 5, 0); r.quota.Load() != nil {
		t.Errorf("a run's quota time %v after a journal not read, want none", r.quota.Load().eta)
	}
	rate := []campaign.Window{{Count: 5, Length: 1e9}}
	stderr.Reset()
	if ws := c.campaignWindows(t.Context(), js, "contoso", rate); !slices.Equal(ws, rate) || stderr.Len() != 0 {
		t.Errorf("with --rate: windows %v, stderr %q; want the rate given and nothing read", ws, stderr.String())
	}
}
