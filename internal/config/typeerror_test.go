package config

import (
	"strings"
	"testing"
)

// A value of the wrong type (a quoted number, a word where a boolean
// goes) is named by its key, as every other error of the file is: the
// decoder's own words gave the line only ("line 6: cannot unmarshal !!str
// a value into int"). Where a flow map holds several on the line, the
// map is named.
func TestParseTypeErrorNamesTheKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ extra, want string }{
		{"    maxInFlight: \"3\"\n", "line 6: tenants[0].maxInFlight: cannot unmarshal !!str a value into int"},
		{"    tracking:\n      enabled: maybe\n", "line 7: tenants[0].tracking.enabled: cannot unmarshal !!str a value into bool"},
		{"    tracking: {enabled: maybe, maxAge: 1h}\n", "line 6: tenants[0].tracking: cannot unmarshal !!str a value into bool"},
		{"    maxInFlight: [1]\n", "line 6: tenants[0].maxInFlight: cannot unmarshal !!seq into int"},
		{"    limits: {offboard: 3}\n", "line 6: tenants[0].limits: cannot unmarshal !!int"},
	} {
		_, err := Parse([]byte("tenants:" + okTenant + tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Parse error = %v, want one containing %q", tc.extra, err, tc.want)
		}
	}
}

// TestParseTypeErrorThroughAnAlias: the decoder gives an error in a value
// reached through an alias the line of its anchor, where another key may
// stand that takes the value well (comment: &w maybe). That key is not
// named as the one in error: the line says where the value is written.
func TestParseTypeErrorThroughAnAlias(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("tenants:" + okTenant + "    comment: &w maybe\n    tracking:\n      enabled: *w\n"))
	if err == nil || !strings.Contains(err.Error(), "line 6: cannot unmarshal !!str a value into bool") {
		t.Errorf("Parse error = %v, want the anchor's line, without a key", err)
	}
	// An anchor that is in error where it stands is still named.
	_, err = Parse([]byte("tenants:" + okTenant + "    tracking:\n      enabled: &w maybe\n"))
	if err == nil || !strings.Contains(err.Error(), "line 7: tenants[0].tracking.enabled: cannot unmarshal") {
		t.Errorf("Parse error = %v, want the key named", err)
	}
}

// TestParseDurationThroughAnAlias: a value that is no duration, reached
// through an alias, is where its anchor stands, under a key that may take
// it well (comment: &d soon): that key is not named as the duration.
func TestParseDurationThroughAnAlias(t *testing.T) {
	t.Parallel()
	for _, anchored := range []string{"soon", "[soon]"} {
		_, err := Parse([]byte("tenants:" + okTenant + "    comment: &d " + anchored + "\n    tracking: {maxAge: *d}\n"))
		if err == nil || strings.Contains(err.Error(), "comment") || !strings.Contains(err.Error(), "line 6: a value is not a duration") {
			t.Errorf("%s: Parse error = %v, want the anchor's line, without a key", anchored, err)
		}
	}
	_, err := Parse([]byte("tenants:" + okTenant + "    tracking: {maxAge: &d soon}\n"))
	if err == nil || !strings.Contains(err.Error(), "line 6: tenants[0].tracking.maxAge is not a duration") {
		t.Errorf("Parse error = %v, want the key named", err)
	}
}

// TestParseOneValueWhereAListGoes: a window written alone where a list of
// windows goes (offboard: "100/1m"), or a single tag or glob, said only
// "cannot unmarshal !!str a value into []string": the error now says to
// write a list, with the form it takes.
func TestParseOneValueWhereAListGoes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ extra, want string }{
		{"    limits:\n      offboard: \"100/1m\"\n", `tenants[0].limits.offboard: cannot unmarshal !!str a value into []string: write a list of windows, such as ["100/1m", "1500/1h"]`},
		{"    limits:\n      machines: 100/1m\n", `tenants[0].limits.machines: cannot unmarshal !!str a value into []string: write a list of windows, such as ["100/1m", "1500/1h"]`},
		{"    guards:\n      protect:\n        machineTags: DoNotOffboard\n", `tenants[0].guards.protect.machineTags: cannot unmarshal !!str a value into []string: write a list, such as ["a", "b"]`},
	} {
		_, err := Parse([]byte("tenants:" + okTenant + tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Parse error = %v, want one containing %q", tc.extra, err, tc.want)
		}
	}
}
