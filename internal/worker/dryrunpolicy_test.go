package worker

import (
	"slices"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDryRunByIDRecordsTheLastSeenItRead: a dry run by machineId of a
// tenant whose guards need no read (machineIds alone) reads the device
// after the guards, to tell that it exists: its result's policy records
// that read's lastSeen, as every result after a read does. It was left
// out, as for a device never read.
func TestDryRunByIDRecordsTheLastSeenItRead(t *testing.T) {
	t.Parallel()
	const other = "2e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	e := setupLoopWith(t, `["100/1m"]`, "    guards:\n      protect:\n        machineIds: [\""+other+"\"]\n", RetryPolicy{})
	e.publishRequest(t, "dry-1", map[string]any{"machineId": loopMachine, "dryRun": true})
	r := e.nextResult(t, "dry-1")
	if r.Outcome != offboard.OutcomeDryRun || r.ComputerDNSName != "pc-1.contoso.local" {
		t.Fatalf("result %s %+v named %q, want dry_run of pc-1.contoso.local", r.Outcome, r.Error, r.ComputerDNSName)
	}
	if r.Policy == nil || !slices.Equal(r.Policy.Checked, []string{"protect"}) {
		t.Fatalf("policy %+v, want protect checked", r.Policy)
	}
	seen, err := time.Parse(time.RFC3339Nano, r.Policy.LastSeen)
	if err != nil || time.Since(seen) < 30*time.Minute || time.Since(seen) > 2*time.Hour {
		t.Errorf("policy.lastSeen %q (%v), want the device's, about an hour ago", r.Policy.LastSeen, err)
	}
}
