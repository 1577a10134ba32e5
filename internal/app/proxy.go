package app

import (
	"net/http"
	"net/netip"
	"net/url"

	"golang.org/x/net/http/httpproxy"
)

// proxyFor is the proxy the environment names for a request
// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, read once: env), as Go's default
// transport uses, but none for a link-local address. The instance
// metadata service (169.254.169.254), where a managed identity's token
// comes from, answers the host it runs on only: through a proxy, set
// for the login and API hosts, its request fails, or, the proxy being a
// host of its own in the cloud, brings back the proxy's identity.
func proxyFor(env *httpproxy.Config) func(*http.Request) (*url.URL, error) {
	proxy := env.ProxyFunc()
	return func(req *http.Request) (*url.URL, error) {
		if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil && ip.Unmap().IsLinkLocalUnicast() {
			return nil, nil
		}
		return proxy(req.URL)
	}
}
