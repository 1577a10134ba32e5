package deploy

import (
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNATSAccounts loads deploy/nats/accounts.conf with the NATS server's
// parser and checks each publisher may publish only its tenant's request
// subjects, and only the worker on the quota subject.
func TestNATSAccounts(t *testing.T) {
	for _, env := range []string{"MDE_OFFBOARD_WORKER_PASSWORD", "CONTOSO_CMDB_PASSWORD", "CONTOSO_GOV_CMDB_PASSWORD", "OFFBOARDCTL_PASSWORD"} {
		t.Setenv(env, "example")
	}
	opts, err := server.ProcessConfigFile("nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*server.Permissions{}
	for _, u := range opts.Users {
		users[u.Username] = u.Permissions
	}
	for user, tenant := range map[string]string{"contoso-cmdb": "contoso", "contoso-gov-cmdb": "contoso-gov"} {
		p := users[user]
		if p == nil || p.Publish == nil {
			t.Fatalf("%s: no publish permissions", user)
		}
		want := []string{"mde.offboard.request." + tenant, "mde.offboard.request." + tenant + ".bulk"}
		if !slices.Equal(p.Publish.Allow, want) {
			t.Errorf("%s may publish on %v, want %v", user, p.Publish.Allow, want)
		}
	}
	// Replicas ask each other whether a request is in their hands
	// (request and reply on mde.offboard.working.<process>).
	if w := users["mde-offboard-worker"]; w == nil || w.Publish == nil || w.Subscribe == nil ||
		!slices.Contains(w.Publish.Allow, "mde.offboard.working.>") || !slices.Contains(w.Subscribe.Allow, "mde.offboard.working.>") {
		t.Errorf("mde-offboard-worker may not both publish and subscribe on mde.offboard.working.>")
	}
	for user, p := range users {
		quota := p != nil && p.Publish != nil && slices.Contains(p.Publish.Allow, "mde.offboard.quota.>")
		if quota != (user == "mde-offboard-worker") {
			t.Errorf("%s: may publish on the quota journal: %v", user, quota)
		}
	}
}
