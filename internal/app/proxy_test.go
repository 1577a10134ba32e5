package app

import (
	"net/http"
	"testing"
	"time"
)

// TestNoProxyForTheInstanceMetadataService: with HTTP_PROXY and
// HTTPS_PROXY set for the login and API hosts, as a corporate network
// sets both, the worker's client sends a managed identity's token
// request to the instance metadata service (169.254.169.254, a
// link-local address) directly. Through the proxy, Go's default, it
// failed, or brought back the token of the proxy's own identity.
func TestNoProxyForTheInstanceMetadataService(t *testing.T) {
	const proxy = "http://proxy.corp.example:3128"
	t.Setenv("HTTP_PROXY", proxy)
	t.Setenv("HTTPS_PROXY", proxy)
	t.Setenv("NO_PROXY", "")
	client, err := httpClient("", 2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tr := client.Transport.(*http.Transport)
	for _, c := range []struct {
		url     string
		proxied bool
	}{
		{"http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01", false},
		{"http://[fe80::1%25eth0]:80/token", false},
		{"http://[::ffff:169.254.169.254]/metadata", false},
		{"https://api.securitycenter.microsoft.com/api/machines/abc/offboard", true},
		{"https://login.microsoftonline.com/tenant/oauth2/v2.0/token", true},
		{"http://169.255.0.1/", true},
	} {
		req, err := http.NewRequest(http.MethodGet, c.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tr.Proxy(req)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if (got != nil) != c.proxied || got != nil && got.String() != proxy {
			t.Errorf("%s: proxy %v, want proxied %v", c.url, got, c.proxied)
		}
	}
}
