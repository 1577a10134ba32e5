package config

import (
	"strings"
	"testing"
)

// TestParseRefusesValuesOutOfBounds: a value no tenant can mean (a
// maxInFlight of a hundred million, a tracking interval of a nanosecond,
// a window of a nanosecond) is refused, naming the tenant and the field.
func TestParseRefusesValuesOutOfBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, extra, want string }{
		{"maxInFlight", "    maxInFlight: 100000000\n", `tenant 1 ("contoso"): maxInFlight is more than 100`},
		{"maxInFlight over the tightest window", "    limits:\n      offboard: [\"300/1m\", \"200/1h\"]\n    maxInFlight: 201\n", "maxInFlight is more than 200"},
		{"maxInFlight overflowing a sum", "    maxInFlight: 9223372036854775807\n", "maxInFlight is more than 100"},
		// A window's count as large allows no more: the tenant's loop
		// counted its free places one by one, for ever, and a sum of two
		// such tenants' places wrapped round.
		{"maxInFlight under a window as large", "    limits:\n      offboard: [\"9223372036854775807/1m\"]\n    maxInFlight: 9223372036854775807\n", "maxInFlight is more than 10000, the most"},
		{"spreadBurst", "    spreadBurst: 100000000\n", `tenant 1 ("contoso"): spreadBurst is more than 100`},
		{"spreadBurst over the shortest window", "    limits:\n      offboard: [\"1500/1h\", \"20/1m\"]\n    spreadBurst: 21\n", "spreadBurst is more than 20"},
		{"firstCheck", "    tracking: {enabled: true, firstCheck: 1ns}\n", `tenant 1 ("contoso"): tracking.firstCheck is shorter than 100ms`},
		{"maxInterval", "    tracking: {enabled: true, maxInterval: 1ns}\n", "tracking.maxInterval is shorter than 100ms"},
		{"maxAge", "    tracking: {enabled: true, maxAge: 1ms}\n", "tracking.maxAge is shorter than 100ms"},
		{"maxInterval overflowing when doubled", "    tracking: {maxInterval: 2000000h}\n", "tracking.maxInterval is longer than"},
		{"firstCheck overflowing when doubled", "    tracking: {firstCheck: 99999d}\n", "tracking.firstCheck is longer than"},
		{"window", "    limits:\n      offboard: [\"100/1ns\"]\n", `tenant 1 ("contoso"): limits.offboard: limit 1 of 1: its window is shorter than 100ms`},
		// So many windows that the consumers' metadata, which carries
		// them, went over what NATS takes: --check-config passed it, and
		// the start failed on NATS's refusal, naming no setting.
		{"windows", "    limits:\n      offboard: [" + strings.Repeat("\"100/1m\", ", 20000) + "\"1500/1h\"]\n", `tenant 1 ("contoso"): limits.offboard: more than 100 limits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte("tenants:" + okTenant + tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestParseKeepsValuesWithinBounds: the bounds refuse nothing the README
// and the example tenants file show, nor the simulator's short windows.
func TestParseKeepsValuesWithinBounds(t *testing.T) {
	t.Parallel()
	for _, extra := range []string{
		"    maxInFlight: 100\n    spreadBurst: 100\n",
		"    apiBaseURL: https://127.0.0.1:8443\n    limits:\n      offboard: [\"5/1s\"]\n    maxInFlight: 16\n    spreadBurst: 5\n",
		"    apiBaseURL: https://127.0.0.1:8443\n    limits:\n      offboard: [\"1000/1s\"]\n    maxInFlight: 1000\n",
		"    apiBaseURL: https://127.0.0.1:8443\n    limits:\n      offboard: [\"100/600ms\"]\n      machines: [\"100/300ms\", \"1500/18s\"]\n",
		"    tracking: {enabled: true, firstCheck: 100ms, maxInterval: 200ms, maxAge: 600ms}\n",
		"    tracking: {enabled: true, firstCheck: 1m, maxInterval: 1h, maxAge: 168h}\n",
		"    tracking: {enabled: true, maxAge: 90d}\n",
	} {
		if _, err := Parse([]byte("tenants:" + okTenant + extra)); err != nil {
			t.Errorf("%q: %v", extra, err)
		}
	}
}

// TestParseRefusesAFractionInACount: the decoder cuts a fraction off where
// a whole number goes, so maxInFlight: 1.5 was 1, and spreadBurst: 0.5
// turned the spreading off, without a word. A whole number written as
// one (4.0) is still read.
func TestParseRefusesAFractionInACount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ extra, want string }{
		{"    maxInFlight: 1.5\n", "line 6: tenants[0].maxInFlight is not a whole number"},
		{"    spreadBurst: 0.5\n", "line 6: tenants[0].spreadBurst is not a whole number"},
		{"    limits: {offboard: [\"10/1m\"]}\n    spreadBurst: 2.5e0\n", "line 7: tenants[0].spreadBurst is not a whole number"},
		// An alias of a fraction anchored under another key is that
		// fraction all the same.
		{"    comment: &n 1.5\n    maxInFlight: *n\n", "line 7: tenants[0].maxInFlight is not a whole number"},
	} {
		_, err := Parse([]byte("tenants:" + okTenant + tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Parse error = %v, want one containing %q", tc.extra, err, tc.want)
		}
	}
	f, err := Parse([]byte("tenants:" + okTenant + "    maxInFlight: 4.0\n"))
	if err != nil || f.Tenants[0].MaxInFlight != 4 {
		t.Errorf("maxInFlight: 4.0: %v", err)
	}
}

// TestSpreadBurstBoundByTheTighterOfTwoShortestWindows: spreadBurst is at
// most the count of the shortest offboard limit; of two limits of that
// length, the tighter's, which alone decides how many calls go. The
// first one written gave the bound: under 100/1m and 50/1m, a burst of
// 80 was taken, and spread nothing.
func TestSpreadBurstBoundByTheTighterOfTwoShortestWindows(t *testing.T) {
	t.Parallel()
	for _, limits := range []string{"[100/1m, 50/1m, 1500/1h]", "[50/1m, 100/1m, 1500/1h]"} {
		_, err := Parse([]byte("tenants:" + okTenant + "    limits: {offboard: " + limits + "}\n    spreadBurst: 80\n"))
		if err == nil || !strings.Contains(err.Error(), "spreadBurst is more than 50") {
			t.Errorf("limits %s, spreadBurst 80: %v, want it refused as more than 50", limits, err)
		}
	}
}
