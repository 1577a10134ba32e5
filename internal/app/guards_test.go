package app

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// contosoGuards protects contoso's devices; the tenants file as an operator
// writes it, read by config.Parse.
const contosoGuards = `
    guards:
      protect:
        machineIds: ["%LISTED%"]
        computerDnsNames: ["DC*.contoso.local", "*.tier0.contoso.local"]
        machineTags: ["DoNotOffboard"]
        rbacGroups: ["Tier 0 servers"]
      requireInactiveFor: 30d
`

// northwindGuards protects device ids only: no device needs reading.
const northwindGuards = `
    guards:
      protect:
        machineIds: ["%LISTED%"]
`

// parseGuards reads a guards section through config.Parse, as Load does.
func parseGuards(t *testing.T, section string) config.Guards {
	t.Helper()
	f, err := config.Parse([]byte(`tenants:
  - name: x
    tenantId: 11111111-2222-3333-4444-555555555555
    clientId: 66666666-7777-8888-9999-000000000000
    clientSecretFile: /dev/null` + section))
	if err != nil {
		t.Fatal(err)
	}
	return f.Tenants[0].Guards
}

// guardEnv is contoso with every guard, fabrikam with none, northwind with
// protected device ids only.
type guardEnv struct {
	*env
	c *collector
	// contoso's devices, by what they are
	listed, dc, tier0, tagged, grouped, recent, inactive, inactive2 mdesim.Machine
}

func setupGuards(t *testing.T) *guardEnv {
	t.Helper()
	long := time.Now().Add(-90 * 24 * time.Hour)
	g := &guardEnv{
		listed:    mdesim.Machine{ID: newID(), ComputerDNSName: "pc-listed.contoso.local", LastSeen: long},
		dc:        mdesim.Machine{ID: newID(), ComputerDNSName: "dc01.contoso.local", LastSeen: long},
		tier0:     mdesim.Machine{ID: newID(), ComputerDNSName: "SQL1.TIER0.contoso.local", LastSeen: long},
		tagged:    mdesim.Machine{ID: newID(), ComputerDNSName: "pc-tagged.contoso.local", LastSeen: long, MachineTags: []string{"retired", "donotoffboard"}},
		grouped:   mdesim.Machine{ID: newID(), ComputerDNSName: "pc-grouped.contoso.local", LastSeen: long, RbacGroupName: "TIER 0 Servers", RbacGroupID: 7},
		recent:    mdesim.Machine{ID: newID(), ComputerDNSName: "pc-recent.contoso.local", LastSeen: time.Now().Add(-2 * 24 * time.Hour)},
		inactive:  mdesim.Machine{ID: newID(), ComputerDNSName: "pc-old.contoso.local", LastSeen: long, MachineTags: []string{"retired"}, RbacGroupName: "Workstations"},
		inactive2: mdesim.Machine{ID: newID(), ComputerDNSName: "pc-old2.contoso.local", LastSeen: long},
	}
	listedNorthwind := newID()
	g.env = setup(t, envConfig{machines: 2, tenants: []string{"contoso", "fabrikam", "northwind"}, tweak: func(f *config.File) {
		for _, tn := range f.Tenants {
			switch tn.Name {
			case "contoso":
				tn.Guards = parseGuards(t, strings.ReplaceAll(contosoGuards, "%LISTED%", strings.ToUpper(g.listed.ID)))
			case "northwind":
				tn.Guards = parseGuards(t, strings.ReplaceAll(northwindGuards, "%LISTED%", listedNorthwind))
			}
		}
	}})
	for _, m := range []mdesim.Machine{g.listed, g.dc, g.tier0, g.tagged, g.grouped, g.recent, g.inactive, g.inactive2} {
		g.sim.AddMachine(g.tenants["contoso"].tenantID, m)
	}
	g.c = g.collect("mde.offboard.result.>")
	return g
}

// request publishes a request of a tenant and waits for its result.
func (g *guardEnv) request(tenant string, body map[string]any) offboard.Result {
	g.t.Helper()
	id, _ := body["requestId"].(string)
	g.publish("mde.offboard.request."+tenant, body, tenant+":"+id)
	var got []offboard.Result
	eventually(g.t, 20*time.Second, "result of "+tenant+"/"+id, func() bool {
		got = g.c.snapshot()[tenant+"/"+id]
		return len(got) > 0
	})
	if len(got) != 1 {
		g.t.Fatalf("%s/%s: %d results", tenant, id, len(got))
	}
	return got[0]
}

// machineReads counts a tenant's GET /api/machines/{id} calls for a device.
func (g *guardEnv) machineReads(tenant, machineID string) int {
	n := 0
	for _, c := range g.sim.Calls() {
		if c.TenantID == g.tenants[tenant].tenantID && c.API == mde.APIMachines && c.MachineID == machineID {
			n++
		}
	}
	return n
}

// wantBlocked checks a blocked_by_policy result: its rule, the message
// naming the rule and what matched, the policy, no offboard call.
func (g *guardEnv) wantBlocked(r offboard.Result, m mdesim.Machine, rule, says string) {
	g.t.Helper()
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy || r.Error.Rule != rule {
		g.t.Errorf("%s: outcome %q error %+v; want blocked_by_policy by %s", r.RequestID, r.Outcome, r.Error, rule)
		return
	}
	if !strings.Contains(r.Error.Message, rule) || !strings.Contains(r.Error.Message, says) {
		g.t.Errorf("%s: message %q does not name %s and %q", r.RequestID, r.Error.Message, rule, says)
	}
	if r.Policy == nil || !slices.Equal(r.Policy.Checked, []string{"protect", "requireInactiveFor"}) {
		g.t.Errorf("%s: policy %+v, want both guard kinds checked", r.RequestID, r.Policy)
	}
	if n := g.offboardCalls(g.tenants["contoso"].tenantID, m.ID); n != 0 {
		g.t.Errorf("%s: %d offboard calls for a protected device", r.RequestID, n)
	}
	// A listed id is refused unread: no host name to report then.
	wantName := m.ComputerDNSName
	if rule == offboard.RuleMachineIDs {
		wantName = ""
	}
	if r.MachineID != m.ID || !strings.EqualFold(r.ComputerDNSName, wantName) {
		g.t.Errorf("%s: device %s %q, want %s %q", r.RequestID, r.MachineID, r.ComputerDNSName, m.ID, wantName)
	}
}

// TestGuardsBlock: each rule refuses its device with its error.rule, a
// dead letter and no offboard call, dry runs included.
func TestGuardsBlock(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	for _, tc := range []struct {
		id   string
		m    mdesim.Machine
		rule string
		says string
		body map[string]any
	}{
		{"b-listed", g.listed, offboard.RuleMachineIDs, g.listed.ID, nil},
		{"b-dc", g.dc, offboard.RuleComputerDNSNames, `"dc01.contoso.local" matches "dc*.contoso.local"`, nil},
		{"b-tier0-by-name", g.tier0, offboard.RuleComputerDNSNames, `"SQL1.TIER0.contoso.local"`, map[string]any{"computerDnsName": "sql1.tier0.contoso.local"}},
		{"b-tagged", g.tagged, offboard.RuleMachineTags, `"donotoffboard"`, nil},
		{"b-grouped", g.grouped, offboard.RuleRbacGroups, `"TIER 0 Servers"`, nil},
		{"b-recent", g.recent, offboard.RuleRequireInactiveFor, "Defender saw the device", nil},
		{"b-dry-run", g.tagged, offboard.RuleMachineTags, `"donotoffboard"`, map[string]any{"machineId": g.tagged.ID, "dryRun": true}},
	} {
		body := tc.body
		if body == nil {
			body = map[string]any{"machineId": tc.m.ID}
		}
		body["requestId"] = tc.id
		r := g.request("contoso", body)
		g.wantBlocked(r, tc.m, tc.rule, tc.says)
		if tc.rule != offboard.RuleMachineIDs && (r.Policy == nil || r.Policy.LastSeen == "") {
			t.Errorf("%s: policy %+v lacks the device's lastSeen", tc.id, r.Policy)
		}
	}
	tn := g.tenants["contoso"].tenantID
	// A listed id is refused before any call; a device resolved by name is
	// matched as the lookup returned it, without reading it again.
	if n := g.machineReads("contoso", g.listed.ID); n != 0 {
		t.Errorf("a listed device id was read %d times, want none", n)
	}
	if n := g.machineReads("contoso", g.tier0.ID); n != 0 {
		t.Errorf("a device resolved by name was read again %d times", n)
	}
	if len(g.sim.Actions(tn)) != 0 {
		t.Errorf("actions %+v, want none", g.sim.Actions(tn))
	}
	// A refusal is counted with its result, once it is stored, which may
	// be just after a subscriber has it.
	counted := func(rule string) (got, want float64) {
		want = map[string]float64{offboard.RuleMachineIDs: 1, offboard.RuleComputerDNSNames: 2, offboard.RuleMachineTags: 2,
			offboard.RuleRbacGroups: 1, offboard.RuleRequireInactiveFor: 1}[rule] // none of notSeenSince: no request carries one
		return metricValue(t, g.env, "mde_offboard_blocked_total", map[string]string{"tenant": "contoso", "rule": rule}), want
	}
	eventually(t, 5*time.Second, "every refusal counted", func() bool {
		got, want := counted(offboard.RuleMachineTags)
		return got == want
	})
	for _, rule := range offboard.Rules {
		if got, want := counted(rule); got != want {
			t.Errorf("blocked_total{rule=%q} = %v, want %v", rule, got, want)
		}
	}
	blocked := offboard.CodeBlockedByPolicy
	g.wantDeadLetters("contoso", blocked, blocked, blocked, blocked, blocked, blocked, blocked)
}

// wantDeadLetters checks the codes of a tenant's dead letters, in order.
func (g *guardEnv) wantDeadLetters(tenant string, codes ...string) {
	g.t.Helper()
	var got []string
	// A consumer made a moment ago may not hold every message yet: read
	// again until as many as wanted came, for a few seconds.
	for deadline := time.Now().Add(5 * time.Second); ; {
		cons, err := g.js.OrderedConsumer(g.t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mde.offboard.dead." + tenant}})
		if err != nil {
			g.t.Fatal(err)
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			g.t.Fatal(err)
		}
		got = got[:0]
		for m := range batch.Messages() {
			got = append(got, m.Headers().Get(offboard.HeaderErrorCode))
		}
		if len(got) >= len(codes) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Equal(got, codes) {
		g.t.Errorf("%s: dead letters with codes %q, want %q", tenant, got, codes)
	}
}

// TestGuardsPassAndReadFailures: an unprotected inactive device is
// offboarded with the policy recorded; a device the guards cannot read is
// not offboarded and gets the read's code; tenants without guards, or with
// protected ids only, read no device.
func TestGuardsPassAndReadFailures(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	contoso := g.tenants["contoso"].tenantID

	r := g.request("contoso", map[string]any{"requestId": "p-inactive", "machineId": g.inactive.ID})
	if r.Outcome != offboard.OutcomeCreated || r.Policy == nil || !slices.Equal(r.Policy.Checked, []string{"protect", "requireInactiveFor"}) {
		t.Fatalf("unprotected inactive device: %+v policy %+v; want created with both guards checked", r, r.Policy)
	}
	if seen, err := time.Parse(time.RFC3339Nano, r.Policy.LastSeen); err != nil || seen.Sub(g.inactive.LastSeen).Abs() > time.Millisecond {
		t.Errorf("policy.lastSeen = %q (%v), want the device's %v", r.Policy.LastSeen, err, g.inactive.LastSeen)
	}
	if n := g.machineReads("contoso", g.inactive.ID); n != 1 {
		t.Errorf("the guarded device was read %d times, want once", n)
	}
	r = g.request("contoso", map[string]any{"requestId": "p-dry", "machineId": g.inactive2.ID, "dryRun": true})
	if r.Outcome != offboard.OutcomeDryRun || r.Policy == nil || r.Policy.LastSeen == "" || g.machineReads("contoso", g.inactive2.ID) != 1 {
		t.Errorf("dry run of an unprotected device: %+v policy %+v after %d reads; want dry_run, policy, one read", r, r.Policy, g.machineReads("contoso", g.inactive2.ID))
	}

	// A device that cannot be read is never offboarded.
	unknown := newID()
	r = g.request("contoso", map[string]any{"requestId": "p-404", "machineId": unknown})
	if r.Error == nil || r.Error.Code != offboard.CodeMachineNotFound || r.Error.HTTPStatus != http.StatusNotFound || r.Policy == nil || r.Policy.LastSeen != "" {
		t.Errorf("unreadable device (404): %+v policy %+v; want machine_not_found with the policy and no lastSeen", r.Error, r.Policy)
	}
	// Twice: the read is tried once more with a new token, which may
	// have the roles (TestConsentGrantedTakesANewToken).
	g.sim.InjectStatus(contoso, mde.APIMachines, http.StatusForbidden, "Forbidden", "Missing application roles. API required roles: Machine.Read.All", 2, 0)
	r = g.request("contoso", map[string]any{"requestId": "p-403", "machineId": g.inactive2.ID})
	if r.Error == nil || r.Error.Code != offboard.CodeForbidden || r.Error.HTTPStatus != http.StatusForbidden || r.Error.Rule != "" {
		t.Errorf("unreadable device (403): %+v; want forbidden", r.Error)
	}
	if n := g.offboardCalls(contoso, unknown) + g.offboardCalls(contoso, g.inactive2.ID); n != 0 {
		t.Errorf("%d offboard calls for devices the guards could not read", n)
	}
	g.wantDeadLetters("contoso", offboard.CodeMachineNotFound, offboard.CodeForbidden)
	if got := metricValue(t, g.env, "mde_offboard_blocked_total", map[string]string{"tenant": "contoso"}); got != 0 {
		t.Errorf("blocked_total = %v after reads that failed, want 0", got)
	}

	// fabrikam has no guards: its recently seen device is offboarded, with
	// no policy and no read.
	fab := g.tenants["fabrikam"].machines[0]
	r = g.request("fabrikam", map[string]any{"requestId": "p-fab", "machineId": fab.ID})
	if r.Outcome != offboard.OutcomeCreated || r.Policy != nil || g.machineReads("fabrikam", fab.ID) != 0 {
		t.Errorf("tenant without guards: %+v policy %+v, %d reads; want created, no policy, no read", r, r.Policy, g.machineReads("fabrikam", fab.ID))
	}
	// northwind protects ids only: an unlisted device is offboarded
	// without being read, and its policy has no lastSeen.
	nw := g.tenants["northwind"].machines[0]
	r = g.request("northwind", map[string]any{"requestId": "p-nw", "machineId": nw.ID})
	if r.Outcome != offboard.OutcomeCreated || r.Policy == nil || !slices.Equal(r.Policy.Checked, []string{"protect"}) || r.Policy.LastSeen != "" {
		t.Errorf("ids-only guards: %+v policy %+v; want created, checked [protect], no lastSeen", r, r.Policy)
	}
	if n := g.machineReads("northwind", nw.ID); n != 0 {
		t.Errorf("ids-only guards read the device %d times, want none", n)
	}
}

// TestRequestIDEndingLikeARetry: request "chg:2" and the retry of "chg"
// at attempt 2 each get their result. Their results once shared a message
// id (result:contoso:chg:2), and the results stream dropped the second as
// a duplicate: the device was offboarded and the request never answered.
func TestRequestIDEndingLikeARetry(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "chg", "machineId": g.recent.ID}), g.recent, "requireInactiveFor", "lastSeen")
	g.publish("mde.offboard.request.contoso", map[string]any{"requestId": "chg", "machineId": g.recent.ID, "attempt": 2}, "contoso:chg:retry")
	eventually(t, 20*time.Second, "the retry's result", func() bool { return len(g.c.snapshot()["contoso/chg"]) == 2 })
	r := g.request("contoso", map[string]any{"requestId": "chg:2", "machineId": g.inactive.ID})
	if r.Outcome != offboard.OutcomeCreated {
		t.Errorf("chg:2: %+v (error %+v), want created", r, r.Error)
	}
	if got := g.c.snapshot()["contoso/chg"]; len(got) != 2 || got[1].Attempt != 2 {
		t.Errorf("chg: %+v, want attempts 1 and 2 answered", got)
	}
}
