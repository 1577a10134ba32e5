package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestCampaignPlanTimeoutDuringTheTenantCheckNamesTheFlag: --timeout
// bounds the whole plan, the check that a worker has set up the tenant
// included. Run out there, it was told as "consumer of contoso: context
// deadline exceeded", naming neither the flag nor the plan, where the
// same deadline during the request names --timeout.
func TestCampaignPlanTimeoutDuringTheTenantCheckNamesTheFlag(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "plan.csv")
	var stdout, stderr bytes.Buffer
	code := runContext(t.Context(), []string{"--nats-url", nc.ConnectedUrl(), "campaign", "plan", "--tenant", "contoso",
		"--inactive-for", "90d", "--timeout", "1ns", "--out", out}, &stdout, &stderr)
	if code != exitFailed || !strings.Contains(stderr.String(), "--timeout 1ns ran out") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("exit %d, stderr %q: want 1 and one line naming the --timeout that ran out", code, stderr.String())
	}
}
