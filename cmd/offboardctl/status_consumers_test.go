package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusWithoutAnyTenantsConsumers: a lone NATS server restarted
// loses the tenants' consumers (kept in memory) until a worker makes them
// again, while the requests wait in the stream. Status showed an empty
// table, or [] in --json, exit 0: no tenant, nothing waiting, by its
// look. It says, in one line, that no worker has set up any tenant's
// consumers, exit 1, as status of one such tenant does.
func TestStatusWithoutAnyTenantsConsumers(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}} {
		code, out, errs := ctl(t, nc.ConnectedUrl(), args...)
		if code != exitFailed || out != "" || !strings.Contains(errs, "no worker has set up any tenant's consumers") ||
			strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%q without any tenant's consumers: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

// TestStatusOfATenantMissingAConsumer: a tenant whose bulk consumer is
// gone (a worker makes it again) has a bulk backlog status cannot count.
// Status showed "bulk 0" in its table and left bulk out of --json's
// backlog; it says the consumer is missing instead, in both.
func TestStatusOfATenantMissingAConsumer(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Bulk)); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ctl(t, nc.ConnectedUrl(), "status")
	if code != exitOK || !strings.Contains(out, "normal 0, bulk ?") ||
		!strings.Contains(out, "contoso: its bulk consumer is missing") {
		t.Errorf("status of a tenant without its bulk consumer: exit %d:\n%s%s", code, out, errs)
	}
	code, out, errs = ctl(t, nc.ConnectedUrl(), "status", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); code != exitOK || err != nil || len(sts) != 1 {
		t.Fatalf("status --json: exit %d, %v: %s %s", code, err, out, errs)
	}
	if st := sts[0]; len(st.MissingConsumers) != 1 || st.MissingConsumers[0] != offboard.Bulk {
		t.Errorf("status --json of a tenant without its bulk consumer: missing consumers %v, want [bulk]", st.MissingConsumers)
	}
}
