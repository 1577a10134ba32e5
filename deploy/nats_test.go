package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNATSAccounts loads deploy/nats/accounts.conf with the NATS server's
// parser and checks: the worker and offboardctl share account MDE, each
// publisher is alone in an account of its own that imports only its
// tenant's request subjects, exported by MDE to that account only, and
// may publish on those only; only the worker publishes on the quota
// journal, only offboardctl on control changes; offboardctl cannot make,
// delete or pull from the worker's durable consumers of any tenant of
// deploy/worker.yaml; each user of MDE reads only its own inbox prefix.
func TestNATSAccounts(t *testing.T) {
	for _, u := range accountUsers {
		t.Setenv(u.passwordEnv, "example")
	}
	opts, err := server.ProcessConfigFile("nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*server.Permissions{}
	accountOf := map[string]string{}
	members := map[string][]string{}
	for _, u := range opts.Users {
		users[u.Username] = u.Permissions
		if u.Account != nil {
			accountOf[u.Username] = u.Account.Name
			members[u.Account.Name] = append(members[u.Account.Name], u.Username)
		}
	}
	if len(users) != len(accountUsers) {
		t.Errorf("%d users, want %d", len(users), len(accountUsers))
	}
	for user, u := range accountUsers {
		if accountOf[user] != u.account {
			t.Errorf("%s is in account %q, want %q", user, accountOf[user], u.account)
		}
	}
	exports, imports := accountServices(t)

	for user, tenant := range publishers {
		p := users[user]
		if p == nil || p.Publish == nil {
			t.Fatalf("%s: no publish permissions", user)
		}
		want := []string{"mde.offboard.request." + tenant, "mde.offboard.request." + tenant + ".bulk"}
		if !slices.Equal(p.Publish.Allow, want) {
			t.Errorf("%s may publish on %v, want %v", user, p.Publish.Allow, want)
		}
		// Alone in its account, it reads its replies on its client's
		// default prefix; nothing else reaches the account.
		acc := accountOf[user]
		if acc == "MDE" || len(members[acc]) != 1 {
			t.Errorf("%s shares account %s with %v", user, acc, members[acc])
		}
		if p.Subscribe == nil || !slices.Equal(p.Subscribe.Allow, []string{"_INBOX.>"}) {
			t.Errorf("%s may subscribe to %v, want [_INBOX.>]", user, p.Subscribe)
		}
		var fromMDE []string
		for _, imp := range imports[acc] {
			if imp.account != "MDE" {
				t.Errorf("account %s imports %s from %s", acc, imp.subject, imp.account)
			}
			fromMDE = append(fromMDE, imp.subject)
		}
		if !slices.Equal(fromMDE, want) {
			t.Errorf("account %s imports %v, want %v", acc, fromMDE, want)
		}
		for _, s := range want {
			if to := exports[s]; !slices.Equal(to, []string{acc}) {
				t.Errorf("MDE exports %s to %v, want [%s]", s, to, acc)
			}
		}
	}
	if len(exports) != 2*len(publishers) {
		t.Errorf("MDE exports %d services, want the %d request subjects of the publishers", len(exports), 2*len(publishers))
	}
	if len(imports["MDE"]) != 0 {
		t.Errorf("MDE imports %v", imports["MDE"])
	}

	// Replicas ask each other whether a request is in their hands
	// (request and reply on mde.offboard.working.<process>).
	if w := users["mde-offboard-worker"]; w == nil || w.Publish == nil || w.Subscribe == nil ||
		!slices.Contains(w.Publish.Allow, "mde.offboard.working.>") || !slices.Contains(w.Subscribe.Allow, "mde.offboard.working.>") {
		t.Errorf("mde-offboard-worker may not both publish and subscribe on mde.offboard.working.>")
	}
	for user, p := range users {
		if got, want := mayPublish(p, "mde.offboard.quota.contoso"), user == "mde-offboard-worker"; got != want {
			t.Errorf("%s: may publish on the quota journal: %v", user, got)
		}
		if got, want := mayPublish(p, "mde.offboard.control.contoso"), user == "offboardctl"; got != want {
			t.Errorf("%s: may publish control changes: %v", user, got)
		}
		// offboardctl guards asks every replica for a tenant's guards.
		if got, want := mayPublish(p, "mde.offboard.guards.contoso"), user == "offboardctl"; got != want {
			t.Errorf("%s: may ask for a tenant's guards: %v", user, got)
		}
	}
	if w := users["mde-offboard-worker"]; w == nil || w.Subscribe == nil || !slices.ContainsFunc(w.Subscribe.Allow, func(f string) bool {
		return server.SubjectMatchesFilter("mde.offboard.guards.contoso", f)
	}) {
		t.Errorf("mde-offboard-worker may not subscribe to guards requests (mde.offboard.guards.<tenant>)")
	}

	// offboardctl and the worker's durable consumers of every tenant.
	ctl := users["offboardctl"]
	for _, name := range append(tenantConsumers(t), queue.ConsumerUnrouted) {
		const api = "$JS.API.CONSUMER."
		const stream = ".MDE_OFFBOARD_REQUESTS."
		for _, s := range []string{
			api + "CREATE" + stream + name, api + "CREATE" + stream + name + ".mde.offboard.request.contoso",
			api + "DELETE" + stream + name, api + "MSG.NEXT" + stream + name,
		} {
			if mayPublish(ctl, s) {
				t.Errorf("offboardctl may publish on %s: the worker's consumer %s", s, name)
			}
		}
		if s := api + "INFO" + stream + name; !mayPublish(ctl, s) {
			t.Errorf("offboardctl may not publish on %s (status)", s)
		}
	}
	// Its own ordered consumers, there and on the other streams.
	for _, s := range []string{
		"$JS.API.CONSUMER.CREATE.MDE_OFFBOARD_REQUESTS.Ab12Cd_1.mde.offboard.request.contoso",
		"$JS.API.CONSUMER.MSG.NEXT.MDE_OFFBOARD_REQUESTS.Ab12Cd_1",
		"$JS.API.CONSUMER.DELETE.MDE_OFFBOARD_REQUESTS.Ab12Cd_1",
		"$JS.API.CONSUMER.CREATE.MDE_OFFBOARD_RESULTS.Ab12Cd_1.mde.offboard.result.contoso",
		"$JS.API.CONSUMER.CREATE.KV_MDE_OFFBOARD_CONTROL",
	} {
		if !mayPublish(ctl, s) {
			t.Errorf("offboardctl may not publish on %s", s)
		}
	}
	if mayPublish(ctl, "$JS.API.CONSUMER.CREATE.MDE_OFFBOARD_REQUESTS") {
		t.Error("offboardctl may make a consumer of MDE_OFFBOARD_REQUESTS named in the request's body")
	}

	// Replies in MDE: a user subscribes to its own inbox prefix only; only
	// the worker publishes on inboxes, its own and offboardctl's (plans).
	for user, p := range users {
		if accountOf[user] != "MDE" {
			continue
		}
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

// mayPublish says whether permissions p let a client publish on subject.
func mayPublish(p *server.Permissions, subject string) bool {
	if p == nil || p.Publish == nil {
		return true
	}
	match := func(filters []string) bool {
		return slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) })
	}
	return (p.Publish.Allow == nil || match(p.Publish.Allow)) && !match(p.Publish.Deny)
}

// serviceImport is one service an account imports.
type serviceImport struct{ account, subject string }

// accountServices reads accounts.conf's service exports (subject: the
// accounts it is exported to) and imports (account: what it imports).
func accountServices(t *testing.T) (exports map[string][]string, imports map[string][]serviceImport) {
	t.Helper()
	m, err := conf.ParseFile("nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	accounts, _ := m["accounts"].(map[string]any)
	exports, imports = map[string][]string{}, map[string][]serviceImport{}
	for name, a := range accounts {
		acc, _ := a.(map[string]any)
		exp, _ := acc["exports"].([]any)
		for _, e := range exp {
			e, _ := e.(map[string]any)
			subject, ok := e["service"].(string)
			if !ok {
				t.Errorf("account %s exports %v: not a service", name, e)
				continue
			}
			to, _ := e["accounts"].([]any)
			if len(to) == 0 {
				t.Errorf("account %s exports %s to every account", name, subject)
			}
			for _, a := range to {
				exports[subject] = append(exports[subject], a.(string))
			}
		}
		imp, _ := acc["imports"].([]any)
		for _, i := range imp {
			i, _ := i.(map[string]any)
			svc, ok := i["service"].(map[string]any)
			if !ok {
				t.Errorf("account %s imports %v: not a service", name, i)
				continue
			}
			if to, ok := svc["to"]; ok {
				t.Errorf("account %s imports %v as %v", name, svc["subject"], to)
			}
			from, _ := svc["account"].(string)
			subject, _ := svc["subject"].(string)
			imports[name] = append(imports[name], serviceImport{from, subject})
		}
	}
	return exports, imports
}

// tenantConsumers is the names of the worker's durable consumers of the
// tenants of deploy/worker.yaml: tenant-<tenant> and bulk-<tenant>.
func tenantConsumers(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tenants []struct {
			Name string `yaml:"name"`
		} `yaml:"tenants"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Tenants) == 0 {
		t.Fatal("worker.yaml: no tenants")
	}
	var names []string
	for _, tn := range f.Tenants {
		names = append(names, queue.ConsumerName(tn.Name, offboard.Normal), queue.ConsumerName(tn.Name, offboard.Bulk))
	}
	return names
}
