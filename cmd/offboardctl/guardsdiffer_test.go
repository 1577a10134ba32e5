package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// Two replicas whose budgets differ, and whose files write the same tag,
// group, glob and device id apart (case, white space, a class of one
// character): the budget alone is named as what differs, in the table
// and in --json. Before, the lists were compared as written, and the
// operator was sent to mend a tag both files protect alike.
func TestGuardsDifferNamesOnlyWhatDiffers(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", `      protect:
        machineIds: ["00000000000000000000000000000000000000AA"]
        computerDnsNames: ["dc01.contoso.local"]
        machineTags: ["DoNotOffboard"]
        rbacGroups: ["Domain Controllers"]
      budget: "500/24h"
`)
	e.startReplica("replica-b", `      protect:
        machineIds: ["00000000000000000000000000000000000000aa"]
        computerDnsNames: ["DC0[1].contoso.local"]
        machineTags: ["donotoffboard "]
        rbacGroups: ["domain  controllers"]
      budget: "400/24h"
`)
	code, out, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out, "budget                     replica replica-a: 500/24h; replica replica-b: 400/24h") {
		t.Errorf("the budgets not shown as what differs:\n%s", out)
	}
	for _, f := range []string{"protect.machineIds", "protect.computerDnsNames", "protect.machineTags", "protect.rbacGroups"} {
		if strings.Contains(out, f+strings.Repeat(" ", 26-len(f))+" replica") {
			t.Errorf("%s, the same in both files, shown as a difference:\n%s", f, out)
		}
	}
	_, js, _ := e.ctl(t.Context(), "guards", tenant, "--json")
	var got struct {
		Tenants []struct {
			Differ []string `json:"differ"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(js), &got); err != nil || len(got.Tenants) != 1 {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if !slices.Equal(got.Tenants[0].Differ, []string{"budget"}) {
		t.Errorf("differ %v, want [budget]", got.Tenants[0].Differ)
	}
}
