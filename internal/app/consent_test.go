package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestConsentGrantedTakesANewToken: the application's roles are in its
// access token, as Entra ID issued it. A request refused 403 "Missing
// application roles" before admin consent fails forbidden; once consent
// is granted, the next request (the runbook's dead retry) is offboarded,
// not refused again for as long as the token cached before the grant
// lives (an hour).
func TestConsentGrantedTakesANewToken(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, noStart: true})
	tt := e.tenants["contoso"]
	tenant := mdesim.Tenant{TenantID: tt.tenantID, ClientID: tt.clientID, ClientSecret: tt.secret, Roles: []string{}}
	e.sim.AddTenant(tenant) // no consent
	e.start()
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "before", "machineId": tt.machines[0].ID}, "before")
	got := res.wait(t, 1, 30*time.Second)
	if rs := got["contoso/before"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeForbidden {
		t.Fatalf("before the grant: results %+v, want one forbidden", rs)
	}

	tenant.Roles = nil // consent granted: Machine.Offboard and Machine.Read.All
	e.sim.AddTenant(tenant)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "after", "machineId": tt.machines[1].ID}, "after")
	got = res.wait(t, 2, 30*time.Second)
	if rs := got["contoso/after"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("after the grant: results %+v, want one created", rs)
	}
	forbidden := 0
	for _, c := range e.sim.Calls() {
		if c.Status == http.StatusForbidden {
			forbidden++
		}
	}
	t.Logf("%d calls answered 403, %d token requests", forbidden, e.sim.TokenRequests(tt.tenantID))
}
