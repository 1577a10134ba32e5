package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestNoProxyForTheInstanceMetadataService: with HTTP_PROXY and
// HTTPS_PROXY set for the login and API hosts, as a corporate network
// sets both, the worker's client sends a managed identity's token
// request to the instance metadata service (169.254.169.254, a
// link-local address) directly, and so the endpoint an identity
// variable names (Service Fabric's IDENTITY_ENDPOINT, a private address
// of the node; MSI_ENDPOINT). Through the proxy, Go's default, it
// failed, or brought back the token of the proxy's own identity.
func TestNoProxyForTheInstanceMetadataService(t *testing.T) {
	const proxy = "http://proxy.corp.example:3128"
	t.Setenv("HTTP_PROXY", proxy)
	t.Setenv("HTTPS_PROXY", proxy)
	t.Setenv("NO_PROXY", "")
	t.Setenv("IDENTITY_ENDPOINT", "https://10.0.0.4:2377/metadata/identity/oauth2/token")
	t.Setenv("MSI_ENDPOINT", " http://Node-7.cluster.local/msi/token")
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
		{"https://10.0.0.4:2377/metadata/identity/oauth2/token?api-version=2019-07-01-preview", false},
		{"https://10.0.0.4/metadata/identity/oauth2/token", true},
		{"http://node-7.cluster.local:80/msi/token", false},
		{"https://node-7.cluster.local/msi/token", true},
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

// TestProxyThatRefusesTheTunnelIsTold: the worker's client through an
// egress proxy that answers the login host's CONNECT with 407 (it asks
// for a password) or 403 (the host is not let through) tells the token
// error so, by the proxy's status. Go's error was the proxy's reason
// phrase alone, and the error said "no answer from the login host", as
// for a network fault. The proxy's password is never shown.
func TestProxyThatRefusesTheTunnelIsTold(t *testing.T) {
	t.Setenv("PROXY_TUNNEL_SECRET", "tunnel-s3cret")
	for _, c := range []struct {
		status int
		want   string
	}{
		{http.StatusProxyAuthRequired, "asks for a user name and password"},
		{http.StatusForbidden, "refused to open a connection to it"},
	} {
		px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(c.status) }))
		u, _ := url.Parse(px.URL)
		u.User = url.UserPassword("proxyuser", "pr0xy-pa55")
		t.Setenv("HTTPS_PROXY", u.String())
		t.Setenv("NO_PROXY", "")
		client, err := httpClient("", 2, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		cloud := mde.Cloud{AuthorityHost: "https://login.proxied.invalid", Scope: "https://api.example/.default"}
		cred, err := mde.NewCredential(mde.CredentialConfig{TenantID: "11111111-2222-3333-4444-555555555555",
			ClientID: "66666666-7777-8888-9999-000000000000", ClientSecretEnv: "PROXY_TUNNEL_SECRET"}, cloud, client)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{cloud.Scope}})
		cancel()
		px.Close()
		if err == nil {
			t.Fatalf("%d: a token through a proxy that refused the tunnel", c.status)
		}
		if msg := err.Error(); !strings.Contains(msg, "the proxy that HTTPS_PROXY names "+c.want) ||
			strings.Contains(msg, "pr0xy-pa55") || strings.Contains(msg, "tunnel-s3cret") {
			t.Errorf("proxy answering CONNECT %d: error %q, want it to say %q, no secret", c.status, msg, c.want)
		}
	}
}
