package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// A tenant protecting a tier-0 export of 30,000 device ids: the answer,
// about 1.3 MB in JSON, is more than the server's max_payload (1 MiB).
// guards still shows every id (--json) and the count (the table), and
// the replica is not told as one that did not answer.
func TestGuardsManyMachineIDs(t *testing.T) {
	const n = 30000
	e := newEnv(t, 0)
	var ids strings.Builder
	ids.WriteString("      protect:\n        machineIds: [")
	for i := range n {
		if i > 0 {
			ids.WriteString(", ")
		}
		fmt.Fprintf(&ids, `"%040x"`, i+1)
	}
	ids.WriteString("]\n      requireInactiveFor: 72h\n")
	e.startReplica("replica-a", ids.String())
	e.startReplica("replica-b", ids.String())
	code, out, errOut := e.ctl(t.Context(), "guards", tenant, "--json")
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr: %s", code, errOut)
	}
	var got struct {
		Tenants []struct {
			Agree  bool `json:"agree"`
			Guards []struct {
				Replicas []string `json:"replicas"`
				Protect  struct {
					MachineIDs []string `json:"machineIds"`
				} `json:"protect"`
				RequireInactiveFor string `json:"requireInactiveFor"`
			} `json:"guards"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v", err)
	}
	if len(got.Tenants) != 1 || !got.Tenants[0].Agree || len(got.Tenants[0].Guards) != 1 {
		t.Fatalf("tenants %+v, want one that agrees, one set of guards", got.Tenants)
	}
	g := got.Tenants[0].Guards[0]
	if len(g.Protect.MachineIDs) != n || g.RequireInactiveFor != "72h0m0s" || strings.Join(g.Replicas, ",") != "replica-a,replica-b" {
		t.Fatalf("%d device ids, requireInactiveFor %q, replicas %v; want %d, 72h0m0s, both", len(g.Protect.MachineIDs), g.RequireInactiveFor, g.Replicas, n)
	}
	seen := map[string]bool{}
	for _, id := range g.Protect.MachineIDs {
		seen[id] = true
	}
	if len(seen) != n || !seen[fmt.Sprintf("%040x", 1)] || !seen[fmt.Sprintf("%040x", n)] {
		t.Errorf("%d distinct device ids, want %d, the first and the last among them", len(seen), n)
	}
	code, table, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitOK || !strings.Contains(table, fmt.Sprintf("protect.machineIds         %d  ", n)) || strings.Contains(table, "NOT ANSWERED") {
		t.Errorf("table: exit %d, stderr %q:\n%s", code, errOut, table)
	}
}
