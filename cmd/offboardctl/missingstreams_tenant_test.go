package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// On a server that holds none of the worker's streams (a new one, no
// worker started yet), the commands that first check the tenant say what
// is missing, as the others do: pause, resume, campaign run and campaign
// plan said "tenant contoso: no worker has set up its consumers (not in
// any tenants file?)", which sent the operator to the tenants file.
func TestMissingStreamsSaySoBeforeTheTenantCheck(t *testing.T) {
	t.Parallel()
	url := natstest.Start(t, 1).URLs()
	dir := t.TempDir()
	csv := filepath.Join(dir, "wave.csv")
	if err := os.WriteFile(csv, []byte("computerDnsName\npc-0001.contoso.local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pause", "contoso"},
		{"resume", "contoso"},
		{"budget", "contoso", "--clear"},
		{"campaign", "run", "--tenant", "contoso", "--csv", csv, "--report", filepath.Join(dir, "report.csv")},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(dir, "plan.csv")},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--nats-url", url}, args...), &out, &errb)
		msg := errb.String()
		if code != exitFailed || strings.Count(msg, "start a worker, or apply deploy/nats") != 1 ||
			strings.Contains(msg, "tenants file") || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want %d and one line saying the streams are missing", args, code, msg, exitFailed)
		}
	}
}
