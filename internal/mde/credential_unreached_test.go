package mde

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestLoginHostUnreachedSaysWhy: a token request that reaches no answer
// says why, in words an operator acts on: a name that does not resolve
// (a network that reaches the internet through a proxy only), a proxy
// that cannot be reached, a certificate not accepted (a TLS-inspecting
// proxy), a refused connection, a proxy that asks for a password or
// refuses the tunnel (by its status: Go's error is its reason phrase
// alone). Before, each was "no answer from the
// login host" alone. The identity library's text, which may hold what
// the login host said, is still never shown.
func TestLoginHostUnreachedSaysWhy(t *testing.T) {
	t.Setenv("LOGIN_UNREACHED_SECRET", "unreached-s3cret")
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(untrusted.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "https://" + closed.Addr().String()
	closed.Close()
	proxyDown, _ := url.Parse("http://" + closed.Addr().String())
	// refusing is a proxy that answers every CONNECT with status, its URL
	// with a user and password.
	refusing := func(status int) *url.URL {
		px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
		t.Cleanup(px.Close)
		u, _ := url.Parse(px.URL)
		u.User = url.UserPassword("proxyuser", "pr0xy-pa55")
		return u
	}
	for _, c := range []struct {
		name, host string
		proxy      *url.URL
		want       string
	}{
		{"name that does not resolve", "https://login.does-not-resolve.invalid", nil, "its name does not resolve"},
		{"proxy down", "https://login.does-not-resolve.invalid", proxyDown, "the proxy that HTTPS_PROXY names could not be reached"},
		{"certificate not trusted", untrusted.URL, nil, "its TLS certificate is not accepted"},
		{"connection refused", refused, nil, "the connection was refused"},
		{"proxy asks for a password", "https://login.does-not-resolve.invalid", refusing(http.StatusProxyAuthRequired), "the proxy that HTTPS_PROXY names asks for a user name and password"},
		{"proxy refuses the tunnel", "https://login.does-not-resolve.invalid", refusing(http.StatusForbidden), "the proxy that HTTPS_PROXY names refused to open a connection to it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.Proxy = nil
			if c.proxy != nil {
				tr.Proxy = http.ProxyURL(c.proxy)
			}
			tr.OnProxyConnectResponse = ProxyConnectAnswer // as the worker's client
			cloud := Cloud{AuthorityHost: c.host, Scope: "https://api.example/.default"}
			cred, err := NewCredential(CredentialConfig{TenantID: "11111111-2222-3333-4444-555555555555",
				ClientID: "66666666-7777-8888-9999-000000000000", ClientSecretEnv: "LOGIN_UNREACHED_SECRET"}, cloud, &http.Client{Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{cloud.Scope}})
			if err == nil {
				t.Fatal("a token")
			}
			msg := err.Error()
			if !strings.Contains(msg, "no answer from the login host") || !strings.Contains(msg, c.want) {
				t.Errorf("error %q, want it to say %q", msg, c.want)
			}
			if strings.Contains(msg, "unreached-s3cret") || strings.Contains(msg, "pr0xy-pa55") || strings.Contains(msg, "dial tcp") {
				t.Errorf("error %q shows the library's text", msg)
			}
		})
	}
}
