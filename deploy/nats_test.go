package deploy

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNATSAccounts loads deploy/nats/accounts.conf with the NATS server's
// parser and checks each publisher may publish only its tenant's request
// subjects, only the worker on the quota subject, and each user may read
// only its own inbox prefix.
func TestNATSAccounts(t *testing.T) {
	for _, u := range accountUsers {
		t.Setenv(u.passwordEnv, "example")
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
	// Replies: a user subscribes to its own inbox prefix only; only the
	// worker publishes on inboxes, its own and offboardctl's (plans).
	if len(users) != len(accountUsers) {
		t.Errorf("%d users, want %d", len(users), len(accountUsers))
	}
	for user, p := range users {
		own := accountUsers[user].inbox + ".>"
		if p == nil || p.Subscribe == nil || !slices.Contains(p.Subscribe.Allow, own) {
			t.Errorf("%s may not subscribe to its inbox %s", user, own)
			continue
		}
		for _, s := range p.Subscribe.Allow {
			if strings.HasPrefix(s, "_INBOX") && s != own || s == ">" {
				t.Errorf("%s may subscribe to %s: another user's replies", user, s)
			}
		}
		var inboxes []string
		if p.Publish != nil {
			for _, s := range p.Publish.Allow {
				if strings.HasPrefix(s, "_INBOX") || s == ">" {
					inboxes = append(inboxes, s)
				}
			}
		}
		want := []string(nil)
		if user == "mde-offboard-worker" {
			want = []string{"_INBOX_worker.>", "_INBOX_offboardctl.>"}
		}
		if !slices.Equal(inboxes, want) {
			t.Errorf("%s may publish on inboxes %v, want %v", user, inboxes, want)
		}
	}
}
