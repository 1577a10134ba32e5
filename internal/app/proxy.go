package app

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// identityEndpointVars name the managed identity endpoints the identity
// library reads from the environment outside a virtual machine: App
// Service and Service Fabric (IDENTITY_ENDPOINT), Cloud Shell and older
// App Service (MSI_ENDPOINT). Azure Arc's is on localhost, which Go never
// proxies.
var identityEndpointVars = []string{"IDENTITY_ENDPOINT", "MSI_ENDPOINT"}

// proxyFor is the proxy the environment names for a request
// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, read once: env), as Go's default
// transport uses, but none for a managed identity's endpoint: a
// link-local address (the instance metadata service, 169.254.169.254)
// or the host and port an identity endpoint variable names (Service
// Fabric's is a private address of the node). Each answers the host it
// runs on only: through a proxy, set for the login and API hosts, its
// request fails, or, the proxy being a host of its own in the cloud,
// brings back the proxy's identity.
func proxyFor(env *httpproxy.Config, getenv func(string) string) func(*http.Request) (*url.URL, error) {
	proxy := env.ProxyFunc()
	direct := identityHosts(getenv)
	return func(req *http.Request) (*url.URL, error) {
		if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil && ip.Unmap().IsLinkLocalUnicast() {
			return nil, nil
		}
		if direct[hostPort(req.URL)] {
			return nil, nil
		}
		return proxy(req.URL)
	}
}

// identityHosts are the hosts and ports of the identity endpoints the
// environment names; an endpoint that is not a URL names none.
func identityHosts(getenv func(string) string) map[string]bool {
	hosts := map[string]bool{}
	for _, name := range identityEndpointVars {
		u, err := url.Parse(strings.TrimSpace(getenv(name)))
		if err != nil || u.Host == "" {
			continue
		}
		hosts[hostPort(u)] = true
	}
	return hosts
}

// hostPort is u's host, lower-cased, and port, the scheme's default
// when u names none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}
