package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A proxy's user and password, and a URL's query, are not shown in the
// text of a call that got no answer, whatever error the transport gave.
func TestClientTransportErrorShowsNoProxyCredentials(t *testing.T) {
	t.Parallel()
	const user, password, key = "proxyuser", "Pr0xy-Pa55", "sig-0123456789"
	// parseProxy is the error a proxy setting that does not parse gets
	// (golang.org/x/net/http/httpproxy wrote it so): the value twice,
	// once in url.Parse's own error.
	parseProxy := func(raw string) error {
		_, err := url.Parse(raw)
		if err == nil {
			t.Fatalf("url.Parse(%q) = nil error", raw)
		}
		return fmt.Errorf("invalid proxy address %q: %w", raw, err)
	}
	withProxy := func(proxy func(*http.Request) (*url.URL, error)) func(*Options) {
		return func(o *Options) {
			o.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: proxy}}
		}
	}
	failing := func(err error) func(*Options) {
		return withProxy(func(*http.Request) (*url.URL, error) { return nil, err })
	}
	unreachable, err := url.Parse("http://" + user + ":" + password + "@127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		opts func(*Options)
	}{
		{"proxy with a password, unreachable", withProxy(http.ProxyURL(unreachable))},
		{"malformed proxy", failing(parseProxy("http://" + user + ":" + password + "@proxy:3128%zz"))},
		{"malformed proxy without scheme", failing(parseProxy(" " + user + ":" + password + "@proxy:3128"))},
		{"malformed proxy, password with a space and a quote", failing(parseProxy("http://" + user + ":x " + password + `"y@proxy:3128%zz`))},
		{"proxy URL unquoted", failing(errors.New("proxyconnect to http://" + user + ":" + password + "@proxy:3128 failed"))},
		{"URL with a key in its query", failing(&url.Error{Op: "Get", URL: "https://pac.example/proxy.pac?sig=" + key, Err: errors.New("connection refused")})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(http.StatusCreated, nil, pendingAction), tt.opts)
			v := f.client.Offboard(context.Background(), testMachineID, "c")
			if v.Answered() || v.Reason != ReasonNetwork {
				t.Fatalf("verdict = %d %v, want no answer, network", v.Status, v.Reason)
			}
			msg := v.Error()
			for i, s := range []string{password, user, key, testToken} {
				if strings.Contains(msg, s) {
					t.Errorf("Error() (%d characters) holds secret #%d", len(msg), i)
				}
			}
			if len(f.requests()) != 0 {
				t.Errorf("the API got %d requests, want 0", len(f.requests()))
			}
		})
	}
}

func TestWithoutURLCredentials(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"proxyconnect tcp: dial tcp 127.0.0.1:1: connect: connection refused":                                            "proxyconnect tcp: dial tcp 127.0.0.1:1: connect: connection refused",
		`invalid proxy address "http://u:pw@proxy:3128%zz": parse "http://u:pw@proxy:3128%zz": invalid URL escape "%zz"`: `invalid proxy address "http://proxy:3128%zz": parse "http://proxy:3128%zz": invalid URL escape "%zz"`,
		`parse "u:p w\"x@proxy": first path segment in URL cannot contain colon`:                                         `parse "proxy": first path segment in URL cannot contain colon`,
		"via http://u:pw@proxy:3128 failed":                                                                              "via http://proxy:3128 failed",
		`Get "https://api.example/x?k=v&sig=s": EOF`:                                                                     `Get "https://api.example/x": EOF`,
		"no proxy at all: EOF": "no proxy at all: EOF",
	} {
		if got := withoutURLCredentials(in); got != want {
			t.Errorf("withoutURLCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}
