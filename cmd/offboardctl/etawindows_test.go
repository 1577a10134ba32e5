package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

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
	rate := []campaign.Window{{Count: 5, Length: 1e9}}
	stderr.Reset()
	if ws := c.campaignWindows(t.Context(), js, "contoso", rate); !slices.Equal(ws, rate) || stderr.Len() != 0 {
		t.Errorf("with --rate: windows %v, stderr %q; want the rate given and nothing read", ws, stderr.String())
	}
}
