package config

import (
	"strings"
	"testing"
)

// TestParseRefusesLimitsLooserThanTheAPIs: on Microsoft's API hosts,
// limits that let more calls through than the documented 100 a minute or
// 1500 an hour met the API's own limit with 429s, which stall every other
// tool of the tenant: a count one zero too many, or a minute's limit
// given alone (its hour dropped with the default), passed --check-config
// and started. A simulator or a gateway of one's own (apiBaseURL) keeps
// whatever limits it has.
func TestParseRefusesLimitsLooserThanTheAPIs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, extra, want string }{
		{"a count too many", "    limits:\n      offboard: [\"1000/1m\", \"1500/1h\"]\n", `tenant 1 ("contoso"): limits.offboard: lets more than 100 calls in a minute through`},
		{"the minute alone", "    limits:\n      machines: [\"100/1m\"]\n", "limits.machines: lets more than 1500 calls in an hour through"},
		{"short windows", "    limits:\n      machineactions: [\"100/600ms\"]\n", "limits.machineactions: lets more than 100 calls in a minute and 1500 calls in an hour through"},
		{"halves of a minute", "    limits:\n      offboard: [\"60/30s\", \"1500/1h\"]\n", "limits.offboard: lets more than 100 calls in a minute through"},
		{"a geo host", "    apiBaseURL: https://eu.api.security.microsoft.com\n    limits:\n      offboard: [\"200/1m\", \"1500/1h\"]\n", "limits.offboard: lets more than 100"},
		{"a host written with its final dot", "    apiBaseURL: https://api.securitycenter.microsoft.com.\n    limits:\n      offboard: [\"200/1m\", \"1500/1h\"]\n", "limits.offboard: lets more than 100"},
		{"a government cloud", "    cloud: gcc-high\n    limits:\n      offboard: [\"100/1m\", \"3000/1h\"]\n", "limits.offboard: lets more than 1500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte("tenants:" + okTenant + tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A limit that does not read is told as such alone.
	if _, err := Parse([]byte("tenants:" + okTenant + "    limits:\n      offboard: [\"100 a minute\"]\n")); err == nil || strings.Contains(err.Error(), "lets more") {
		t.Errorf("a limit that does not read: %v, want its own error alone", err)
	}
	for _, extra := range []string{
		"    limits:\n      offboard: [\"100/1m\", \"1500/1h\"]\n",
		"    limits:\n      offboard: [\"50/30s\", \"1500/1h\"]\n      machines: [\"10/1m\"]\n      machineactions: [\"25/1m\", \"1000/1h\"]\n",
		"    limits:\n      offboard: [\"100/2m\", \"1500/1h\"]\n",
		"    apiBaseURL: https://127.0.0.1:8443\n    limits:\n      offboard: [\"100/600ms\"]\n",
		"    apiBaseURL: https://mde-gateway.contoso.local\n    limits:\n      offboard: [\"1000/1m\"]\n",
	} {
		if _, err := Parse([]byte("tenants:" + okTenant + extra)); err != nil {
			t.Errorf("%q: %v", extra, err)
		}
	}
}
