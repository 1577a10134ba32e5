package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPlatformLeftToTheAPI: the worker does not decide which platforms can
// be offboarded, as the API's documents disagree (MDE-API.md). A macOS and
// a Linux device are offboarded where the service takes them, and failed
// unsupported_os, with its call made once and no retry, where it refuses
// them.
func TestPlatformLeftToTheAPI(t *testing.T) {
	t.Parallel()
	for _, anyPlatform := range []bool{false, true} {
		e := setup(t, envConfig{sim: mdesim.Options{OffboardAnyPlatform: anyPlatform}, machines: 1, tenants: []string{"contoso"}})
		c := e.collect("mde.offboard.result.>")
		tt := e.tenants["contoso"]
		for i, platform := range []string{"macOS", "Linux"} {
			m := mdesim.Machine{ID: newID(), ComputerDNSName: platform + ".contoso.local", OSPlatform: platform, HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)}
			e.sim.AddMachine(tt.tenantID, m)
			r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "p-" + platform, "machineId": m.ID})
			switch {
			case anyPlatform && r.Outcome != offboard.OutcomeCreated:
				t.Errorf("%s device where the service takes it: %+v, want created", platform, r)
			case !anyPlatform && (r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeUnsupportedOS):
				t.Errorf("%s device where the service refuses it: %+v, want failed unsupported_os", platform, r)
			}
			if n := e.offboardCalls(tt.tenantID, m.ID); n != 1 {
				t.Errorf("%s device (any platform %v): %d offboard calls, want 1", platform, anyPlatform, n)
			}
			if n := len(e.sim.Actions(tt.tenantID)); anyPlatform && n != i+1 {
				t.Errorf("%d actions after %d devices taken", n, i+1)
			}
		}
	}
}
