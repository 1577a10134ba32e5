package config

import (
	"strings"
	"testing"
)

// TestMergeKeyOverrideKeepsNothingBelow: a YAML merge (<<) is one level
// deep. A map written next to it under a key the merged map has too
// (protect, guards) replaces that map whole: the guards it does not
// repeat were dropped without a word, and a device they protect was
// offboarded. It is refused, naming the key; a scalar or a list written
// over a merged one, and the same anchor merged and named again, are
// taken as before.
func TestMergeKeyOverrideKeepsNothingBelow(t *testing.T) {
	t.Parallel()
	first := "tenants:" + okTenant + "    guards: &g\n      protect: &p\n        machineTags: [DoNotOffboard]\n        rbacGroups: [Tier 0]\n      requireInactiveFor: 72h\n"
	second := otherTenant("fabrikam")
	for _, tc := range []struct{ name, yaml, want string }{
		{"protect over a merged protect", first + second + "    guards:\n      <<: *g\n      protect:\n        computerDnsNames: [\"dc*\"]\n",
			"line 18: tenants[1].guards.protect replaces the protect merged in with << whole"},
		{"guards over merged guards", first + second + "    <<: {guards: *g}\n    guards:\n      requireInactiveFor: 96h\n",
			"line 17: tenants[1].guards replaces the guards merged in with << whole"},
		{"through a merged list", first + second + "    guards:\n      <<: [{budget: 5/1h}, *g]\n      protect: {machineIds: [\"1e5bc9d7e413ddd7902c2932e418702b84d0cc07\"]}\n",
			"line 18: tenants[1].guards.protect replaces the protect merged in with << whole"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, yaml string }{
		{"a list over a merged list", first + second + "    guards:\n      <<: *g\n      requireInactiveFor: 96h\n"},
		{"a scalar over a merged one", "tenants:" + strings.Replace(okTenant, "\n  - ", "\n  - &t\n    ", 1) + "    guards: {protect: {machineTags: [DoNotOffboard]}}\n  - <<: *t\n    name: fabrikam\n    clientId: 66666666-7777-8888-9999-000000000001\n"},
		{"the merged map again", first + second + "    guards:\n      <<: *g\n      protect: *p\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse([]byte(tc.yaml)); err != nil {
				t.Fatalf("Parse error = %v, want none", err)
			}
		})
	}
}

// TestMergeKeyOverrideRepeatingEverything: a map written over a merged one
// that repeats each of its keys, at every depth, drops nothing: another
// tenant's own protect lists, or its own limits for every API, are taken.
// One that leaves a key out is refused, naming it.
func TestMergeKeyOverrideRepeatingEverything(t *testing.T) {
	t.Parallel()
	first := "tenants:" + okTenant + "    guards: &g\n      protect: &p\n        machineTags: [DoNotOffboard]\n        rbacGroups: [Tier 0]\n      requireInactiveFor: 72h\n"
	second := otherTenant("fabrikam")
	for _, tc := range []struct{ name, yaml string }{
		{"protect with every list", first + second + "    guards:\n      <<: *g\n      protect:\n        machineTags: [Keep]\n        rbacGroups: [Tier 0, Tier 1]\n"},
		{"protect merging *p", first + second + "    guards:\n      <<: *g\n      protect:\n        <<: *p\n        computerDnsNames: [\"dc*\"]\n"},
		{"guards with every key", first + second + "    <<: {guards: *g}\n    guards:\n      protect: {machineTags: [Keep], rbacGroups: []}\n      requireInactiveFor: 96h\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse([]byte(tc.yaml)); err != nil {
				t.Fatalf("Parse error = %v, want none", err)
			}
		})
	}
	deep := first + second + "    <<: {guards: *g}\n    guards:\n      protect: {machineTags: [Keep]}\n      requireInactiveFor: 96h\n"
	want := "line 17: tenants[1].guards replaces the guards merged in with << whole (a YAML merge is one level deep): it leaves out protect.rbacGroups"
	if _, err := Parse([]byte(deep)); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse error = %v, want one containing %q", err, want)
	}
}
