package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusWhileNoTenantHasConsumers: a lone NATS server restarted
// loses every tenant's consumers until a worker makes them again, and
// keeps the operators' controls. status of a tenant the tenants file
// holds said "not in any tenants file", and a tenant shown for its
// pause "not in any tenants file?", as the controls did before they said
// the tenant cannot be checked: each says no tenant's consumers exist.
func TestStatusWhileNoTenantHasConsumers(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso", "fabrikam"}}); err != nil {
		t.Fatal(err)
	}
	url := nc.ConnectedUrl()
	if code, _, errs := ctl(t, url, "pause", "contoso"); code != exitOK {
		t.Fatalf("pause: exit %d, stderr %q", code, errs)
	}
	for _, name := range []string{"contoso", "fabrikam"} {
		for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
			if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerName(name, p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, args := range [][]string{{"status"}, {"status", "contoso"}} {
		code, out, errs := ctl(t, url, args...)
		if code != exitOK || strings.Contains(out, "not in any tenants file") || !strings.Contains(out, "contoso: no worker has set up any tenant's consumers") {
			t.Errorf("%q with no tenant's consumers, contoso paused: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	code, out, errs := ctl(t, url, "status", "fabrikam")
	if code != exitFailed || out != "" || strings.Contains(errs, "not in any tenants file") || !strings.Contains(errs, "no worker has set up any tenant's consumers") {
		t.Errorf("status fabrikam with no tenant's consumers: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// A typo beside tenants set up is still a typo.
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"fabrikam"}}); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := ctl(t, url, "status", "fabrikm"); code != exitFailed || !strings.Contains(errs, "not in any tenants file") {
		t.Errorf("status of a typo: exit %d, stderr %q", code, errs)
	}
	if _, out, _ := ctl(t, url, "status", "contoso"); !strings.Contains(out, "contoso: no worker has set up its consumers (not in any tenants file?)") {
		t.Errorf("status of a tenant not set up beside one that is:\n%s", out)
	}
}
