package main

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/worker"
)

// TestCampaignPlanDeviceSeenDuringPaging: ten devices of the first page
// are seen again (their lastSeen moves past the cutoff) and a stale device
// is added while the plan reads the next pages. The devices after them
// move ten places up in the filtered list; a next page asked from the
// count read so far began ten devices too far, and those that moved onto
// the first page's last places were never read (184 of the 194 devices
// listed, devices 64 to 73 missing). Every device is in the plan, once.
func TestCampaignPlanDeviceSeenDuringPaging(t *testing.T) {
	var (
		once sync.Once
		e    *planEnv
		env  = make(chan *planEnv, 1)
	)
	added := mdesim.Machine{ID: "f000000000000000000000000000000000000001", ComputerDNSName: "late.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Now().Add(-200 * 24 * time.Hour)}
	e = setupPlanWith(t, worker.PlanOptions{PageSize: 64, InlineMax: 4096}, "400d", false, func(o *mdesim.Options) {
		o.OnCall = func(c mdesim.Call) {
			if c.API != mdesim.APIMachines {
				return
			}
			once.Do(func() {
				p := <-env
				// Devices 5 to 14 are on the first page (64 of the 200
				// stale ones).
				for i := 5; i < 15; i++ {
					seen := p.stale[len(p.stale)-1-i]
					seen.LastSeen = time.Now()
					p.sim.AddMachine(p.tenantID, seen)
				}
				p.sim.AddMachine(p.tenantID, added)
			})
		}
	})
	env <- e
	out := filepath.Join(e.dir, "stale.csv")
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Devices 5 to 14 were stale when their page was read: they are in
	// the plan too.
	want := map[string]bool{added.ID: true}
	for _, m := range e.stale {
		want[m.ID] = true
	}
	got := map[string]int{}
	for _, row := range readCSV(t, out)[1:] {
		got[row[0]]++
	}
	missing := 0
	for id := range want {
		if got[id] != 1 {
			missing++
			t.Errorf("device %s: %d rows, want 1", id, got[id])
		}
	}
	if len(got) != len(want) || missing > 0 {
		t.Errorf("%d devices in the plan, want %d (%d missing)", len(got), len(want), missing)
	}
}
