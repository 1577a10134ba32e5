package app

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestResultNamesTheDevice: a request that names its device by machineId
// gets a result that names the device too, whenever the worker learnt the
// name without a call of its own for it: from the device as the guards
// read it, or from the Machine Action the API answered. The API's answer
// to a fresh offboard may carry a null computerDnsName; a device the
// guards did not read then has no name in its result, rather than cost a
// read of the tenant's machines quota. Results of created and
// already_pending actions used to carry no name at all.
func TestResultNamesTheDevice(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, sim: mdesim.Options{NullActionMachineFields: true}, tweak: func(f *config.File) {
		for _, tn := range f.Tenants {
			if tn.Name == "contoso" {
				// A guard on tags reads the device, and passes it.
				tn.Guards = parseGuards(t, "\n    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n")
			}
		}
	}})
	g := &guardEnv{env: e, c: e.collect("mde.offboard.result.>")}
	contoso, fabrikam := e.tenants["contoso"].machines[0], e.tenants["fabrikam"].machines[0]

	r := g.request("contoso", map[string]any{"requestId": "n-guarded", "machineId": contoso.ID})
	if r.Outcome != offboard.OutcomeCreated || r.ComputerDNSName != contoso.ComputerDNSName {
		t.Errorf("device read by the guards: outcome %q, computerDnsName %q; want created, %q", r.Outcome, r.ComputerDNSName, contoso.ComputerDNSName)
	}
	r = g.request("fabrikam", map[string]any{"requestId": "n-fresh", "machineId": fabrikam.ID})
	if r.Outcome != offboard.OutcomeCreated || r.ComputerDNSName != "" {
		t.Errorf("device unread, action without a name: outcome %q, computerDnsName %q; want created, no name", r.Outcome, r.ComputerDNSName)
	}
	// A second request for the device meets its pending action, which the
	// list of actions gives with its name.
	r = g.request("fabrikam", map[string]any{"requestId": "n-pending", "machineId": fabrikam.ID})
	if r.Outcome != offboard.OutcomeAlreadyPending || r.ComputerDNSName != fabrikam.ComputerDNSName {
		t.Errorf("action listed with its name: outcome %q, computerDnsName %q; want already_pending, %q", r.Outcome, r.ComputerDNSName, fabrikam.ComputerDNSName)
	}
	if n := g.machineReads("fabrikam", fabrikam.ID); n != 0 {
		t.Errorf("fabrikam's device read %d times for its name, want none", n)
	}
	if n := g.machineReads("contoso", contoso.ID); n != 1 {
		t.Errorf("contoso's device read %d times, want once, for the guards", n)
	}
}
