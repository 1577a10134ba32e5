package config

import (
	"strings"
	"testing"
)

// A setting written in another case than its own (apiBaseUrl for
// apiBaseURL, as Go's and many tools' settings are written) is named with
// the setting meant, at every level of the file: the decoder's words
// alone, "field apiBaseUrl not found in type config.Tenant", did not say
// that only the case was wrong. A key that is no setting in any case
// gets no guess.
func TestSettingWrittenInAnotherCaseNamesTheSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ file, want string }{
		{"tenants:" + okTenant + "    apiBaseUrl: https://127.0.0.1:8443\n", "tenants[0].apiBaseUrl: field apiBaseUrl not found in type config.Tenant: settings are case-sensitive; write apiBaseURL"},
		{"tenants:" + okTenant + "    cafile: ca.pem\n", "write caFile"},
		{"tenants:" + okTenant + "    tracking:\n      maxage: 24h\n", "tenants[0].tracking.maxage: field maxage not found in type config.Tracking: settings are case-sensitive; write maxAge"},
		{"tenants:" + okTenant + "    guards:\n      protect:\n        machinetags: [x]\n", "write machineTags"},
		{"Tenants:" + okTenant, "write tenants"},
		{"tenants:" + okTenant + "    limits:\n      machineActions: [\"10/1m\"]\n", `limits: unknown API "machineActions" (want offboard, machines, machineactions): the APIs are case-sensitive; write machineactions`},
		{"tenants:" + okTenant + "    limits:\n      Offboard: [\"10/1m\"]\n", "write offboard"},
	} {
		_, err := Parse([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.file, err, tc.want)
		}
	}
	_, err := Parse([]byte("tenants:" + okTenant + "    caFiles: ca.pem\n"))
	if err == nil || !strings.Contains(err.Error(), "field caFiles not found") || strings.Contains(err.Error(), "write") {
		t.Errorf("a key that is no setting: %v", err)
	}
	_, err = Parse([]byte("tenants:" + okTenant + "    limits:\n      machine_actions: [\"10/1m\"]\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown API "machine_actions"`) || strings.Contains(err.Error(), "write") {
		t.Errorf("an API that is none in any case: %v", err)
	}
}
