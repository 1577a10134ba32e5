package config

import (
	"strings"
	"testing"
)

// TestAPIBaseURLWithTheAPIPath: the worker adds /api/machines... to
// apiBaseURL itself. A base copied from the API's documentation with its
// /api (or a whole endpoint) sent every call to /api/api/..., which the
// API answers 404 for: every request failed api_rejected after the file
// was found valid. It is refused naming the setting, as is any path on
// Microsoft's own hosts; a proxy's path that merely holds an api segment
// is taken.
func TestAPIBaseURLWithTheAPIPath(t *testing.T) {
	t.Parallel()
	for _, base := range []string{
		"https://api.securitycenter.microsoft.com/api",
		"https://api.securitycenter.microsoft.com/api/",
		"https://api.security.microsoft.com/API",
		"https://eu.api.security.microsoft.com/api/machines",
		"https://proxy.contoso.local/mde/api/machineactions",
		// The documentation's versioned base: Microsoft's hosts serve
		// the API at their root, and any path there sent every call to
		// /api/v1.0/api/..., which answers 404.
		"https://api.security.microsoft.com/api/v1.0",
		"https://api.securitycenter.microsoft.com/v1.0",
		"https://api-gcc.securitycenter.microsoft.us/api/v1.0/",
	} {
		_, err := Parse([]byte("tenants:" + okTenant + "    apiBaseURL: " + base + "\n"))
		if want := `tenant 1 ("contoso"): apiBaseURL: its path ends in an API's path`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Parse error = %v, want one containing %q", base, err, want)
		}
	}
	// A gateway of one's own may serve the API under /api and strip it.
	for _, base := range []string{"https://proxy.contoso.local/api/mde", "https://proxy.contoso.local/apis", "https://127.0.0.1:8443", "https://apim.contoso.com/api",
		"https://api.security.microsoft.com/", "https://eu.api.security.microsoft.com"} {
		if _, err := Parse([]byte("tenants:" + okTenant + "    apiBaseURL: " + base + "\n")); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
}
