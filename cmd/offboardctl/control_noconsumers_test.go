package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestControlWhileNoTenantHasConsumers: a lone NATS server restarted
// loses every tenant's consumers (kept in memory) until a worker makes
// them again. A pause asked then, before a worker is back (the incident
// that brought it down), was refused as a typo, "not in any tenants
// file?", for a tenant the tenants file does hold. It says that no
// tenant's consumers exist, so the tenant cannot be checked, and names
// --unknown-tenant, in one line, exit 1, as status says it.
func TestControlWhileNoTenantHasConsumers(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"pause", "contoso"}, {"resume", "contoso"}, {"budget", "contoso", "5/1h"}} {
		code, out, errs := ctl(t, nc.ConnectedUrl(), args...)
		if code != exitFailed || out != "" || strings.Contains(errs, "not in any tenants file") ||
			!strings.Contains(errs, "no worker has set up any tenant's consumers") || !strings.Contains(errs, "--unknown-tenant") ||
			strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%q with no tenant's consumers: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	// A typo beside tenants set up is still a typo.
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := ctl(t, nc.ConnectedUrl(), "pause", "contosso"); code != exitFailed || !strings.Contains(errs, "not in any tenants file") {
		t.Errorf("pause of a typo: exit %d, stderr %q", code, errs)
	}
}
