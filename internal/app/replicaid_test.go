package app

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// assignedTenants reads an app's mde_offboard_tenant_assigned gauges: the
// tenants it takes requests of.
func assignedTenants(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "mde_offboard_tenant_assigned" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				for _, l := range m.GetLabel() {
					if l.GetName() == "tenant" {
						out = append(out, l.GetValue())
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestRestartUnderTheSameNameTakesItsTenantsBack: replica B dies without
// a word and comes back under the same --replica-id: its new announcement
// replaces the dead one's, so it takes its tenants back at once instead of
// leaving them to a dead replica until the announcement expires (15 s).
func TestRestartUnderTheSameNameTakesItsTenantsBack(t *testing.T) {
	t.Parallel()
	names := numberedTenants(20)
	e := setup(t, envConfig{tenants: names, machines: 1, noStart: true})
	e.opts.ReplicaID = "replica-a"
	e.start()
	regA := e.reg
	e.opts.ReplicaID = "replica-b"
	b := e.startReplica(names...)
	var onB []string
	eventually(t, 10*time.Second, "the tenants split between A and B", func() bool {
		onA := assignedTenants(t, regA)
		onB = assignedTenants(t, b.opts.Registry)
		return len(onA)+len(onB) == len(names) && len(onA) > 0 && len(onB) > 0
	})

	e.crash(b, "replica-b", e.announcements()["replica-b"])
	b2 := e.startReplica(names...) // the same name, replica-b
	eventually(t, 3*time.Second, "B's tenants back on B after its restart (the dead announcement counts for 15s)", func() bool {
		return slices.Equal(assignedTenants(t, b2.opts.Registry), onB)
	})
	if got := slices.Sorted(maps.Keys(e.announcements())); !slices.Equal(got, []string{"replica-a", "replica-b"}) {
		t.Errorf("announcements %v, want replica-a and replica-b only", got)
	}
}
