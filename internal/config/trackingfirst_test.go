package config

import (
	"strings"
	"testing"
)

// TestParseRefusesAFirstCheckNotShorterThanMaxAge: an action is given up
// at maxAge without a look, and its first look is due no later than
// that: a firstCheck as long as maxAge or longer (look once, after a
// day; a maxAge of a minute under the default firstCheck) was taken, and
// no action was ever looked at, each given up Pending at maxAge whatever
// the API said of it.
func TestParseRefusesAFirstCheckNotShorterThanMaxAge(t *testing.T) {
	t.Parallel()
	for _, tracking := range []string{
		"{enabled: true, firstCheck: 24h, maxAge: 24h}",
		"{enabled: true, firstCheck: 48h, maxInterval: 48h, maxAge: 24h}",
		"{enabled: true, maxAge: 1m}",
	} {
		_, err := Parse([]byte("tenants:" + okTenant + "    tracking: " + tracking + "\n"))
		if err == nil || !strings.Contains(err.Error(), `tenant 1 ("contoso"): tracking.firstCheck is not shorter than tracking.maxAge`) {
			t.Errorf("tracking: %s: Parse error = %v, want one saying firstCheck is not shorter than maxAge", tracking, err)
		}
	}
	if _, err := Parse([]byte("tenants:" + okTenant + "    tracking: {enabled: true, firstCheck: 23h, maxAge: 24h}\n")); err != nil {
		t.Errorf("a firstCheck shorter than maxAge: %v", err)
	}
}
