package offboard

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// A tier-0 export of 50,000 device ids, with globs, tags and groups:
// Encode makes parts of at most the limit each, and JoinGuardsParts
// gives the answer back whole, in whatever order the parts came, and
// not while one is missing.
func TestGuardsReplyParts(t *testing.T) {
	r := GuardsReply{Tenant: "contoso", Replica: "replica-a", Digest: "0123456789abcdef", RequireInactiveFor: "72h0m0s", Budget: "500/24h",
		Protect: GuardsProtect{ComputerDNSNames: []string{"dc*.contoso.local"}, MachineTags: []string{"Tier0"}, RbacGroups: []string{}}}
	for i := range 50000 {
		r.Protect.MachineIDs = append(r.Protect.MachineIDs, fmt.Sprintf("%040x", i+1))
	}
	const limit = 1<<20 - 1024
	data, err := r.Encode(limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 2 {
		t.Fatalf("%d message(s), want parts", len(data))
	}
	parts := make([]GuardsReply, len(data))
	for i, d := range data {
		if len(d) > limit {
			t.Errorf("part %d: %d bytes, more than %d", i+1, len(d), limit)
		}
		if err := json.Unmarshal(d, &parts[i]); err != nil {
			t.Fatal(err)
		}
	}
	rand.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	if _, ok := JoinGuardsParts(parts[1:]); ok {
		t.Error("joined with a part missing")
	}
	got, ok := JoinGuardsParts(parts)
	if !ok {
		t.Fatal("the parts not joined")
	}
	if got.Tenant != r.Tenant || got.Digest != r.Digest || got.RequireInactiveFor != r.RequireInactiveFor || got.Budget != r.Budget || got.Parts != 0 ||
		!slices.Equal(got.Protect.MachineIDs, r.Protect.MachineIDs) || !slices.Equal(got.Protect.ComputerDNSNames, r.Protect.ComputerDNSNames) ||
		!slices.Equal(got.Protect.MachineTags, r.Protect.MachineTags) || got.Protect.RbacGroups == nil {
		t.Errorf("joined: %d ids, %+v", len(got.Protect.MachineIDs), got.Protect.ComputerDNSNames)
	}
	small := GuardsReply{Tenant: "contoso", Replica: "replica-a", Protect: GuardsProtect{MachineIDs: []string{}}}
	if data, err := small.Encode(limit); err != nil || len(data) != 1 || string(data[0]) != mustJSON(t, small) {
		t.Errorf("a small answer: %d messages, %v", len(data), err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
