package mde

import (
	"strings"
	"testing"
)

// TestResolveCloudRefusesAnAuthorityWithAPath: the identity library
// puts the tenant's id after the login host and takes the first segment
// of the path as the tenant: an authorityHost written as an authority,
// the login host with the tenant's id (or the whole token URL of the
// documentation), passed --check-config and the start, then every token
// request went to /{tenantId}/{tenantId}/... and was answered 404, told
// as a proxy's page, each request failing api_error after six attempts;
// any other path was dropped without a word. A path is refused, naming
// the setting.
func TestResolveCloudRefusesAnAuthorityWithAPath(t *testing.T) {
	t.Parallel()
	const tenant = "11111111-2222-3333-4444-555555555555"
	taken := 0
	for _, authority := range []string{
		"https://login.microsoftonline.com/" + tenant,
		"https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token",
		"https://login.microsoftonline.us/organizations",
		"https://127.0.0.1:8443/login",
	} {
		_, err := ResolveCloud("commercial", "", authority, "")
		if err == nil {
			taken++
			t.Errorf("authorityHost %s taken, want it refused", authority)
			continue
		}
		if !strings.Contains(err.Error(), "authorityHost") || !strings.Contains(err.Error(), "path") {
			t.Errorf("authorityHost %s: error %q, want one naming authorityHost and its path", authority, err)
		}
	}
	t.Logf("%d of 4 authority hosts with a path taken", taken)
	for _, authority := range []string{"https://login.microsoftonline.us/", "https://127.0.0.1:8443"} {
		if _, err := ResolveCloud("commercial", "", authority, ""); err != nil {
			t.Errorf("authorityHost %s: %v, want it taken", authority, err)
		}
	}
}
