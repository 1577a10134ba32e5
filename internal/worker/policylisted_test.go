package worker

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPolicyLastSeenOfAListedDeviceFoundByName: a device whose id is in
// protect.machineIds, named in the request by its computerDnsName, was
// read by the name lookup: its refusal's policy records its lastSeen, as
// every result after a read does. It used to be left out, as for a
// device refused by its id alone and never read.
func TestPolicyLastSeenOfAListedDeviceFoundByName(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	w := &Worker{clock: clockwork.NewFakeClockAt(now)}
	day := config.Duration(24 * time.Hour)
	guards := config.Guards{Protect: config.Protect{MachineIDs: []string{id}}, RequireInactiveFor: &day}
	j := &job{t: &tenantRun{Tenant: &Tenant{Config: &config.Tenant{Guards: guards}}}, log: zap.NewNop()}
	found := &mde.Machine{ID: id, ComputerDNSName: "pc-1.contoso.local", LastSeen: "2026-11-20T02:37:24.8112783Z"}
	dev := device{id: id, machine: found, read: now}
	pol, rule, _, res, err := w.judge(t.Context(), j, &dev)
	if err != nil || res != nil || rule != offboard.RuleMachineIDs {
		t.Fatalf("judge = rule %q, result %+v, error %v; want a refusal by %s", rule, res, err, offboard.RuleMachineIDs)
	}
	if pol == nil || pol.LastSeen != "2026-11-20T02:37:24.8112783Z" {
		t.Errorf("policy %+v, want the lastSeen the lookup returned", pol)
	}
	// Refused by its id before any read: there is no lastSeen to record.
	dev = device{id: id}
	if pol, _, _, _, _ := w.judge(t.Context(), j, &dev); pol == nil || pol.LastSeen != "" {
		t.Errorf("policy of a device never read %+v, want no lastSeen", pol)
	}
}
