package config

import (
	"fmt"
	"testing"
)

// guardsDigestOf is the guards digest of a tenant whose guards are the
// lines given (indented by six spaces).
func guardsDigestOf(t *testing.T, guards string) string {
	t.Helper()
	f, err := Parse([]byte(`tenants:
  - name: contoso
    tenantId: 11111111-1111-1111-1111-111111111111
    clientId: 22222222-2222-2222-2222-222222222222
    clientSecretFile: /run/secrets/contoso
    limits:
      offboard: ["10/1m"]
    guards:
` + guards))
	if err != nil {
		t.Fatal(err)
	}
	return GuardsDigest(&f.Tenants[0].Guards)
}

// Two replicas whose tenants files write the same guards apart announce
// one digest, and are not taken to disagree: lists in another order, in
// another case, with duplicates or white space, 72h as 3d or 4320m, a
// budget's window in minutes, and a glob written another way that
// matches the same names (an escape that is not needed, a class of one
// character, a run of stars). Guards that protect other devices have
// other digests.
func TestGuardsDigestSameGuardsWrittenApart(t *testing.T) {
	id := func(i int) string { return fmt.Sprintf(`"%040x"`, i) }
	globs := func(gs string) string { return "      protect:\n        computerDnsNames: [" + gs + "]\n" }
	same := [][2]string{
		{"      requireInactiveFor: 72h\n", "      requireInactiveFor: 3d\n"},
		{"      requireInactiveFor: 72h\n", "      requireInactiveFor: 4320m\n"},
		{"      budget: 500/24h\n", "      budget: 500/1440m\n"},
		{"      protect:\n        machineTags: [Tier0, DoNotOffboard]\n", "      protect:\n        machineTags: [\"donotoffboard \", TIER0, tier0]\n"},
		{"      protect:\n        rbacGroups: [\"Domain  Controllers\"]\n", "      protect:\n        rbacGroups: [\"domain controllers\"]\n"},
		{"      protect:\n        machineIds: [" + id(1) + ", " + id(2) + "]\n", "      protect:\n        machineIds: [" + id(2) + ", " + id(1) + ", " + id(1) + "]\n"},
		{globs(`"dc*.contoso.local"`), globs(`" DC*.Contoso.Local. "`)},
		{globs(`"dc-01.contoso.local"`), globs(`"dc\\-01.contoso.local"`)},
		{globs(`"dc01.contoso.local"`), globs(`"dc0[1].contoso.local"`)},
		{globs(`"dc-01.contoso.local"`), globs(`"dc[\\-]01.contoso.local"`)},
		{globs(`"dc*.contoso.local"`), globs(`"dc**.contoso.local"`)},
		{globs(`"dc\\*.contoso.local"`), globs(`"dc[*].contoso.local"`)},
		{globs(`"dc[0-9].contoso.local", "*.tier0.contoso.local"`), globs(`"*.TIER0.contoso.local", "DC[0-9].contoso.local"`)},
	}
	for _, c := range same {
		if a, b := guardsDigestOf(t, c[0]), guardsDigestOf(t, c[1]); a != b {
			t.Errorf("the same guards, two digests:\n%s%s", c[0], c[1])
		}
	}
	other := [][2]string{
		{"      requireInactiveFor: 72h\n", "      requireInactiveFor: 71h\n"},
		{"      budget: 500/24h\n", "      budget: 500/25h\n"},
		{"      protect:\n        machineIds: [" + id(1) + "]\n", "      protect:\n        machineIds: [" + id(2) + "]\n"},
		{globs(`"dc01.contoso.local"`), globs(`"dc0[12].contoso.local"`)},
		{globs(`"dc*.contoso.local"`), globs(`"dc\\*.contoso.local"`)},
		{globs(`"dc*.contoso.local"`), globs(`"dc?.contoso.local"`)},
		{globs(`"dc[*].contoso.local"`), globs(`"dc*.contoso.local"`)},
		{globs(`"dc01"`), globs(`"dc01.contoso.local"`)},
		{globs(`"dc[0-9].contoso.local"`), globs(`"dc[0-8].contoso.local"`)},
	}
	for _, c := range other {
		if a, b := guardsDigestOf(t, c[0]), guardsDigestOf(t, c[1]); a == b {
			t.Errorf("other guards, one digest:\n%s%s", c[0], c[1])
		}
	}
}
