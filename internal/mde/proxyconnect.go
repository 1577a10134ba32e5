package mde

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// ProxyConnectAnswer is for a transport's OnProxyConnectResponse: a
// proxy that does not open the tunnel to the login or API host is told
// by its status, in a fixed text. Go's own error for it is the proxy's
// reason phrase alone ("Forbidden"; a proxy may echo what it was sent
// there), which names neither the proxy nor the status: a token request
// so refused was told "no answer from the login host", and the operator
// of a proxy asking for a password looked for a network fault.
func ProxyConnectAnswer(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return proxyRefusedError{status: resp.StatusCode}
}

// proxyRefusedError is a proxy's refusal to open a tunnel, by status.
type proxyRefusedError struct{ status int }

func (e proxyRefusedError) Error() string {
	return fmt.Sprintf("%s %d", proxyRefusedText, e.status)
}

// proxyRefusedText begins a proxyRefusedError's text: the identity
// library keeps only its transport's error text, so the token error
// reads the refusal from it.
const proxyRefusedText = "the proxy refused the tunnel with status"
