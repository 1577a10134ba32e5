package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// startReplica starts a worker replica named id whose tenants file gives
// the test's tenant the guards in guardsYAML (the lines under "guards:",
// indented by six spaces; empty: none); stopped at the end of the test.
func (e *testEnv) startReplica(id, guardsYAML string) *app.App {
	e.t.Helper()
	t0 := e.opts.Tenants.Tenants[0]
	body := fmt.Sprintf(`tenants:
  - name: %s
    tenantId: %s
    clientId: %s
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    limits:
      offboard: ["5000/1m"]
`, t0.Name, t0.TenantID, t0.ClientID, t0.ClientSecretFile, t0.APIBaseURL, t0.AuthorityHost)
	if guardsYAML != "" {
		body += "    guards:\n" + guardsYAML
	}
	f, err := config.Parse([]byte(body))
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.opts
	o.Tenants, o.ReplicaID, o.Registry = f, id, prometheus.NewRegistry()
	a, err := app.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := a.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a
}

const (
	guardsDC = `      protect:
        computerDnsNames: ["dc*.contoso.local", "*.tier0.contoso.local"]
        machineTags: ["DoNotOffboard"]
      requireInactiveFor: 72h
      budget: "500/24h"
`
	// guardsNoDC is guardsDC without the domain controllers' glob, as a
	// ConfigMap edited on one deployment only leaves it.
	guardsNoDC = `      protect:
        computerDnsNames: ["*.tier0.contoso.local"]
        machineTags: ["DoNotOffboard"]
      requireInactiveFor: 72h
      budget: "500/24h"
`
)

// The guards of two replicas with the same guards: shown once, both
// replicas named, exit 0; nothing of the tenants file but the guards.
func TestGuardsReplicasAgree(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsDC)
	e.startReplica("replica-b", guardsDC)
	code, out, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{
		"TENANT contoso  replicas replica-a, replica-b (agree)",
		`protect.computerDnsNames   2  "dc*.contoso.local", "*.tier0.contoso.local"`,
		`protect.machineTags        1  "DoNotOffboard"`,
		"protect.machineIds         0",
		"requireInactiveFor         3d (72h)",
		"budget                     500/24h",
		"budget override            none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "DIFFER") || strings.Contains(out, "held by") {
		t.Errorf("agreeing replicas shown as differing:\n%s", out)
	}
	if code, _, errOut := e.ctl(t.Context(), "budget", tenant, "800/24h", "--reason", "migration"); code != exitOK {
		t.Fatalf("budget: exit %d: %s", code, errOut)
	}
	if _, out, _ := e.ctl(t.Context(), "guards", tenant); !strings.Contains(out, "budget override            800/24h, by ") ||
		!strings.Contains(out, ": migration") {
		t.Errorf("the override in force not shown:\n%s", out)
	}
	secret, err := os.ReadFile(e.opts.Tenants.Tenants[0].ClientSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	_, js, _ := e.ctl(t.Context(), "guards", tenant, "--json")
	for _, s := range []string{string(secret), e.opts.Tenants.Tenants[0].ClientID, e.tenantID} {
		if strings.Contains(out+js, s) {
			t.Errorf("guards shows %q, of the tenants file but no guard", s)
		}
	}
}

// Two replicas, one of whose tenants file lost the domain controllers'
// glob: said first, both replicas named, the glob shown as the
// difference, exit 1.
func TestGuardsReplicasDisagree(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsDC)
	e.startReplica("replica-b", guardsNoDC)
	code, out, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	first, _, _ := strings.Cut(out, "\n")
	if want := "GUARDS DIFFER for tenant contoso: replica replica-a and replica replica-b hold other guards"; !strings.HasPrefix(first, want) {
		t.Errorf("first line %q, want it to begin %q", first, want)
	}
	for _, want := range []string{
		`protect.computerDnsNames   replica replica-a: 2, of its own "dc*.contoso.local"; replica replica-b: 1, none of its own`,
		"TENANT contoso  replicas replica-a, replica-b (DISAGREE)",
		"held by replica replica-a:",
		"held by replica replica-b:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "protect.machineTags        replica") || strings.Contains(out, "budget                     replica") {
		t.Errorf("a field both hold alike shown as a difference:\n%s", out)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "the replicas serving contoso hold other guards") {
		t.Errorf("stderr %q, want one line saying the replicas hold other guards", errOut)
	}
}

// One replica alone: its guards, exit 0.
func TestGuardsOneReplica(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsNoDC)
	code, out, errOut := e.ctl(t.Context(), "guards")
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{"TENANT contoso  replicas replica-a (agree)", `protect.computerDnsNames   1  "*.tier0.contoso.local"`} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

// No replica serves the tenant (none ever did, or the only one
// stopped): one line, exit 1, nothing on stdout, --json or not.
func TestGuardsNoReplica(t *testing.T) {
	e := newEnv(t, 0)
	a := e.startReplica("replica-a", guardsDC)
	code, out, errOut := e.ctl(t.Context(), "guards", "fabrikam")
	if code != exitFailed || out != "" || errOut != "offboardctl: no worker serves tenant fabrikam (no replica announced it within 1m0s)\n" {
		t.Errorf("a tenant no replica serves: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// --json writes nothing either, as status --json does on failure.
	code, out, errOut = e.ctl(t.Context(), "guards", "fabrikam", "--json")
	if code != exitFailed || out != "" || errOut != "offboardctl: no worker serves tenant fabrikam (no replica announced it within 1m0s)\n" {
		t.Errorf("--json of a tenant no replica serves: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = e.ctl(t.Context(), "guards", tenant)
	if code != exitFailed || out != "" || errOut != "offboardctl: no worker serves tenant contoso (no replica announced it within 1m0s)\n" {
		t.Errorf("its only replica stopped: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = e.ctl(t.Context(), "guards")
	if code != exitFailed || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no worker serves any tenant") {
		t.Errorf("no replica at all: exit %d, stderr %q", code, errOut)
	}
}

// --json parses, holds the lists whole (the table shortens them) and
// one entry per set of guards, each with its replicas.
func TestGuardsJSON(t *testing.T) {
	e := newEnv(t, 0)
	var long strings.Builder
	long.WriteString("      protect:\n        machineIds: [")
	for i := range 12 {
		if i > 0 {
			long.WriteString(", ")
		}
		fmt.Fprintf(&long, `"%040x"`, i+1)
	}
	long.WriteString("]\n")
	e.startReplica("replica-a", long.String())
	e.startReplica("replica-b", guardsNoDC)
	code, out, errOut := e.ctl(t.Context(), "guards", "--json")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	// Read by the names the JSON gives, as a script reads it.
	type held struct {
		Replicas []string `json:"replicas"`
		Protect  struct {
			MachineIDs  []string `json:"machineIds"`
			MachineTags []string `json:"machineTags"`
		} `json:"protect"`
		RequireInactiveFor string `json:"requireInactiveFor"`
		Budget             string `json:"budget"`
	}
	var got struct {
		Tenants []struct {
			Tenant   string   `json:"tenant"`
			Agree    bool     `json:"agree"`
			Replicas []string `json:"replicas"`
			Guards   []held   `json:"guards"`
			Differ   []string `json:"differ"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(got.Tenants) != 1 {
		t.Fatalf("%d tenants, want 1: %s", len(got.Tenants), out)
	}
	tg := got.Tenants[0]
	if tg.Tenant != tenant || tg.Agree || len(tg.Guards) != 2 || strings.Join(tg.Replicas, ",") != "replica-a,replica-b" {
		t.Fatalf("tenant %+v", tg)
	}
	if ids := tg.Guards[0].Protect.MachineIDs; len(ids) != 12 || ids[11] != fmt.Sprintf("%040x", 12) || tg.Guards[0].Replicas[0] != "replica-a" {
		t.Errorf("replica-a's guards %+v, want its 12 device ids", tg.Guards[0])
	}
	if g := tg.Guards[1]; g.Replicas[0] != "replica-b" || g.RequireInactiveFor != "72h0m0s" || g.Budget != "500/24h" ||
		len(g.Protect.MachineIDs) != 0 || g.Protect.MachineTags[0] != "DoNotOffboard" {
		t.Errorf("replica-b's guards %+v", g)
	}
	want := []string{"protect.machineIds", "protect.computerDnsNames", "protect.machineTags", "requireInactiveFor", "budget"}
	if strings.Join(tg.Differ, ",") != strings.Join(want, ",") {
		t.Errorf("differ %v, want %v", tg.Differ, want)
	}
	// The table shows the first five ids and how many more.
	_, table, _ := e.ctl(t.Context(), "guards", tenant)
	if !strings.Contains(table, "protect.machineIds         12  ") || !strings.Contains(table, ", ... 7 more (--json shows them all)") ||
		strings.Contains(table, fmt.Sprintf("%040x", 6)) {
		t.Errorf("the table does not shorten the 12 device ids to 5:\n%s", table)
	}
}

// Bad usage: one line, exit 2, nothing asked.
func TestGuardsUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"guards", "Contoso!"}, `offboardctl: tenant "Contoso!" is not a tenant name`},
		{[]string{"guards", "a", "b"}, "offboardctl: usage: offboardctl guards [TENANT]; got 2 arguments"},
		{[]string{"guards", "--bogus"}, "offboardctl: unknown flag: --bogus"},
	} {
		var out, errb strings.Builder
		code := runContext(t.Context(), append([]string{"--nats-url", "nats://127.0.0.1:1"}, c.args...), &out, &errb)
		if code != exitUsage || out.Len() != 0 || strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line %q...", c.args, code, out.String(), errb.String(), c.want)
		}
	}
}

// A replica that announced the tenant and does not answer (a release
// before guards requests): named, its guards not known, exit 1; the
// answering replica's guards still shown.
func TestGuardsReplicaNotAnswering(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsDC)
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "replica-old", []byte(`{"tenants":["contoso"]}`)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{
		"NOT ANSWERED for tenant contoso: replica replica-old did not answer within 2s; its guards are not known",
		"TENANT contoso  replicas replica-a, replica-old (NOT ALL ANSWERED)",
		`protect.computerDnsNames   2  "dc*.contoso.local", "*.tier0.contoso.local"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "GUARDS DIFFER") || errOut != "offboardctl: a replica serving contoso did not answer within 2s\n" {
		t.Errorf("a replica not answering told as guards that differ, or stderr %q:\n%s", errOut, out)
	}
}

// TestGuardsDurationAsWritten: the table writes requireInactiveFor as an
// operator writes it, not in Go's form: 30d (720h), not 720h0m0s.
func TestGuardsDurationAsWritten(t *testing.T) {
	for in, want := range map[string]string{
		"720h0m0s": "30d (720h)",
		"72h0m0s":  "3d (72h)",
		"1h30m0s":  "1h30m",
		"45m0s":    "45m",
		"1h0m30s":  "1h0m30s",
		"":         "none",
		"3/1h":     "3/1h",
	} {
		if got := noneIf(in); got != want {
			t.Errorf("noneIf(%q) = %q, want %q", in, got, want)
		}
	}
}
