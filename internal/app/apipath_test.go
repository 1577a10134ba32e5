package app

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestWrongAPIPathIsNotMachineNotFound: a tenant whose apiBaseURL has a
// path too many (".../api") gets the API's "no resource for this URI"
// 404 for every call. Its requests, by machine id and by host name, fail
// api_rejected with that answer, looked at again as any 404 first: not
// machine_not_found, which says the device is gone and points nowhere
// near the setting.
func TestWrongAPIPathIsNotMachineNotFound(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, tweak: func(f *config.File) {
		f.Tenants[0].Resolved.Cloud.APIBaseURL += "/api"
	}})
	m := e.tenants["contoso"].machines
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "by-id", "machineId": m[0].ID}, "by-id")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "by-name", "computerDnsName": m[1].ComputerDNSName}, "by-name")
	got := res.wait(t, 2, 30*time.Second)
	for _, key := range []string{"contoso/by-id", "contoso/by-name"} {
		rs := got[key]
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeFailed || rs[0].Error == nil {
			t.Fatalf("%s: results %+v, want one failed", key, rs)
		}
		if r := rs[0]; r.Error.Code != offboard.CodeAPIRejected || !strings.Contains(r.Error.Message, "No HTTP resource was found") {
			t.Errorf("%s: %s %q, want %s with the API's answer", key, r.Error.Code, r.Error.Message, offboard.CodeAPIRejected)
		}
	}
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}
