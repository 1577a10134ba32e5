package mde

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// A call that never had a connection to the API host (refused, a TLS
// handshake or a proxy's CONNECT that failed, no answer to the dial) was
// not sent: it spends no place of the quota, and an offboard so failed is
// not one that may have acted. One whose request went out on a connection
// that then broke may have been.
func TestUnreachableAPIHostIsNotSent(t *testing.T) {
	t.Parallel()
	refused := func(t *testing.T) string {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		return srv.URL
	}
	// untrusted is an https API host whose certificate the client does
	// not trust.
	untrusted := func(t *testing.T) string {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		return srv.URL
	}
	// silent accepts connections and never answers the TLS handshake.
	silent := func(t *testing.T) string {
		return "https://" + serveTCP(t, func(c net.Conn) { t.Cleanup(func() { c.Close() }) })
	}
	// cutAfterRequest reads the whole request and closes the connection
	// without an answer: the API may have acted on it.
	cutAfterRequest := func(t *testing.T) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	// refusingProxy answers every CONNECT 407.
	refusingProxy := func(t *testing.T) *url.URL {
		return &url.URL{Scheme: "http", Host: serveTCP(t, func(c net.Conn) {
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					c.Write([]byte("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"))
				}
			}()
		})}
	}
	for _, tt := range []struct {
		name     string
		base     func(*testing.T) string
		proxy    func(*testing.T) *url.URL
		timeout  time.Duration
		reason   Reason
		wantSent bool
	}{
		{name: "connection refused", base: refused, reason: ReasonNetwork},
		{name: "certificate not trusted", base: untrusted, reason: ReasonNetwork},
		{name: "no TLS handshake in time", base: silent, timeout: 200 * time.Millisecond, reason: ReasonTimeout},
		{name: "proxy refuses the tunnel", base: func(*testing.T) string { return "https://api.securitycenter.microsoft.com" }, proxy: refusingProxy, reason: ReasonNetwork},
		{name: "connection cut after the request", base: cutAfterRequest, reason: ReasonNetwork, wantSent: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
			if tt.proxy != nil {
				tr.Proxy = http.ProxyURL(tt.proxy(t))
			}
			t.Cleanup(tr.CloseIdleConnections)
			timeout := 10 * time.Second
			if tt.timeout > 0 {
				timeout = tt.timeout
			}
			c := NewClient(Options{
				Cloud:      Cloud{APIBaseURL: tt.base(t), Scope: "https://api.securitycenter.microsoft.com/.default"},
				Credential: &fakeCredential{token: testToken},
				HTTPClient: &http.Client{Transport: tr},
				Timeout:    timeout,
			})
			calls := map[string]func() *Verdict{
				"Offboard":   func() *Verdict { return c.Offboard(context.Background(), testMachineID, "c") },
				"GetMachine": func() *Verdict { return c.GetMachine(context.Background(), testMachineID) },
				"FindMachinesByName": func() *Verdict {
					return c.FindMachinesByName(context.Background(), "pc.contoso.local")
				},
			}
			for name, call := range calls {
				v := call()
				if v.Answered() || v.Class != Retry || v.Reason != tt.reason || v.Sent != tt.wantSent {
					t.Errorf("%s: verdict = {status %d, %v, %v, sent %v} (%s), want {0, retry, %v, sent %v}",
						name, v.Status, v.Class, v.Reason, v.Sent, v.Error(), tt.reason, tt.wantSent)
				}
			}
		})
	}
}

// serveTCP listens on a free local port until the test ends and hands
// each connection to accepted; it returns the port's address.
func serveTCP(t *testing.T, accepted func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted(c)
		}
	}()
	return ln.Addr().String()
}
