package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardFullCaseFolding: a tag or a device group matches in any case
// as Unicode's full case folding has it: German capitals write ß as SS
// ("AUSSENDIENST" is "Außendienst" in capitals), and Swiss German writes
// ss for it. Compared one letter for another (strings.EqualFold), the
// device carrying the capitals went unprotected and was offboarded.
func TestGuardFullCaseFolding(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, listed, has string }{
		{"capitals on the device", "Außendienst", "AUSSENDIENST"},
		{"capitals in the file", "GROSSKUNDEN", "Großkunden"},
		{"Swiss spelling on the device", "Außendienst", "Aussendienst"},
		{"capital sharp s on the device", "Außendienst", "AU\u1e9eENDIENST"},
		{"capitals and spaces", "Server Straße 1", "SERVER\u00a0 STRASSE 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tags := &config.Guards{Protect: config.Protect{MachineTags: []string{tc.listed}}}
			if rule, _ := refusal(tags, id, &mde.Machine{ID: id, MachineTags: []string{tc.has}}, now); rule != offboard.RuleMachineTags {
				t.Errorf("tag %q listed as %q: rule %q, want %s", tc.has, tc.listed, rule, offboard.RuleMachineTags)
			}
			groups := &config.Guards{Protect: config.Protect{RbacGroups: []string{tc.listed}}}
			if rule, _ := refusal(groups, id, &mde.Machine{ID: id, RbacGroupName: tc.has, RbacGroupID: "7"}, now); rule != offboard.RuleRbacGroups {
				t.Errorf("group %q listed as %q: rule %q, want %s", tc.has, tc.listed, rule, offboard.RuleRbacGroups)
			}
		})
	}
	// Other words stay other words.
	for _, tc := range []struct{ listed, has string }{
		{"Außendienst", "Außendiens"},
		{"Critical", "Criticals"},
	} {
		g := &config.Guards{Protect: config.Protect{MachineTags: []string{tc.listed}}}
		if rule, why := refusal(g, id, &mde.Machine{ID: id, MachineTags: []string{tc.has}}, now); rule != "" {
			t.Errorf("tag %q listed as %q: refused by %s (%s), want none", tc.has, tc.listed, rule, why)
		}
	}
}

// TestGuardFoldingIsOneForm: tags and groups compare in one form, in
// which letters of one case folding orbit are one letter: cases.Fold
// writes the Cherokee letters in the other case (Ꮳ as ꮳ, ꮳ as Ꮳ), so a
// device tagged "ꮳꮃꭹ STRASSE" matched no protected "ᏣᎳᎩ Straße" (nor
// compared letter for letter, ß against SS), though the start's check
// of two names of one tenant took the two spellings as one, and a device
// one name protected was offboarded through the other.
func TestGuardFoldingIsOneForm(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, listed := range []string{"ᏣᎳᎩ Straße", "ꮳꮃꭹ Straße", "ᏣᎳᎩ STRASSE"} {
		for _, has := range []string{"ᏣᎳᎩ STRASSE", "ꮳꮃꭹ STRASSE", "ꮳꮃꭹ strasse", "ꮳᎳꭹ STRAẞE", "ᏣᎳᎩ Straße"} {
			tags := &config.Guards{Protect: config.Protect{MachineTags: []string{"Other", listed}}}
			if rule, _ := refusal(tags, id, &mde.Machine{ID: id, MachineTags: []string{"x", has}}, now); rule != offboard.RuleMachineTags {
				t.Errorf("tag %q listed as %q: rule %q, want %s", has, listed, rule, offboard.RuleMachineTags)
			}
			groups := &config.Guards{Protect: config.Protect{RbacGroups: []string{listed}}}
			if rule, _ := refusal(groups, id, &mde.Machine{ID: id, RbacGroupName: has, RbacGroupID: "7"}, now); rule != offboard.RuleRbacGroups {
				t.Errorf("group %q listed as %q: rule %q, want %s", has, listed, rule, offboard.RuleRbacGroups)
			}
		}
	}
	g := &config.Guards{Protect: config.Protect{MachineTags: []string{"ᏣᎳᎩ Straße"}, RbacGroups: []string{"ᏣᎳᎩ Straße"}}}
	for _, has := range []string{"ᏣᎳ STRASSE", "ꮳꮃꭹ STRASS"} {
		if rule, why := refusal(g, id, &mde.Machine{ID: id, MachineTags: []string{has}, RbacGroupName: has, RbacGroupID: "7"}, now); rule != "" {
			t.Errorf("%q: refused by %s (%s), want none", has, rule, why)
		}
	}
}

// TestGuardManyTagsAreCheap: a device with 50 tags, against 50 protected
// tags, is judged with each tag put in its compared form once, not once
// for each pair: 2,500 pairs took 60,000 allocations and 12 ms, on the
// path of every request and of every device of a plan.
func TestGuardManyTagsAreCheap(t *testing.T) {
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	var listed, has []string
	for i := range 50 {
		listed = append(listed, fmt.Sprintf("Protected %d Außendienst", i))
		has = append(has, fmt.Sprintf("Device %d Innendienst", i))
	}
	g := &config.Guards{Protect: config.Protect{MachineTags: listed, RbacGroups: listed}}
	m := &mde.Machine{ID: id, MachineTags: has, RbacGroupName: "Device Innendienst", RbacGroupID: "7"}
	allocs := testing.AllocsPerRun(2, func() {
		if rule, why := refusal(g, id, m, now); rule != "" {
			t.Fatalf("refused by %s (%s)", rule, why)
		}
	})
	// Each of the 151 names in its form once: a few allocations each.
	if allocs > 20*151 {
		t.Errorf("%v allocations for 50 tags against 50 and a group against 50; want each name's form made once", allocs)
	}
}
