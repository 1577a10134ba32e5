package config

import (
	"strings"
	"testing"
)

// TestParseRefusesATrackingDurationOfZero: tracking's firstCheck,
// maxInterval and maxAge are at least 100ms, yet a 0 written (maxAge: 0
// for "follow for ever", firstCheck: 0s for "look at once") was taken
// as no value, and the default (7 days, 1m, 1h) applied without a word,
// while 50ms was refused. A 0 is now refused, naming the key.
func TestParseRefusesATrackingDurationOfZero(t *testing.T) {
	t.Parallel()
	const tenant = "tenants:\n  - name: contoso\n    tenantId: 11111111-2222-3333-4444-555555555555\n" +
		"    clientId: 66666666-7777-8888-9999-000000000000\n    clientSecretEnv: X\n"
	for _, tc := range []struct{ tracking, want string }{
		{"{enabled: true, maxAge: 0}", "tenants[0].tracking.maxAge"},
		{"{enabled: true, firstCheck: 0s}", "tenants[0].tracking.firstCheck"},
		{"{enabled: true, maxInterval: 0d}", "tenants[0].tracking.maxInterval"},
		{"{enabled: true, maxInterval: 0h0m}", "tenants[0].tracking.maxInterval"},
	} {
		_, err := Parse([]byte(tenant + "    tracking: " + tc.tracking + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "100ms") {
			t.Errorf("tracking: %s: Parse error = %v, want one naming %s and its least, 100ms", tc.tracking, err, tc.want)
		}
	}
	f, err := Parse([]byte(tenant + "    tracking: {enabled: true}\n"))
	if err != nil || f.Tenants[0].Tracking.MaxAge != Duration(168*60*60*1e9) {
		t.Errorf("tracking without durations: %v, %v; want the defaults", f, err)
	}
}
