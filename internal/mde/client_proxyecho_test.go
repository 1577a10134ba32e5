package mde

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// echoingProxy is a proxy that answers each CONNECT with what answer
// makes of the request's Proxy-Authorization header, and closes the
// connection. It returns the proxy's URL, with user and password.
func echoingProxy(t *testing.T, user, password string, answer func(auth string) string) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if r, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
				_, _ = conn.Write([]byte(answer(r.Header.Get("Proxy-Authorization")) + "\r\n\r\n"))
			}
			_ = conn.Close()
		}
	}()
	return &url.URL{Scheme: "http", User: url.UserPassword(user, password), Host: ln.Addr().String()}
}

// A proxy on the way to the API that refuses the tunnel and quotes the
// Proxy-Authorization header it got, in its status line or as one, has
// Go's HTTP client quote that text: the verdict's message, which reaches
// results, dead letters and logs, carries neither the proxy's user and
// password nor their base64 form.
func TestProxyQuotingItsCredentialsIsScrubbed(t *testing.T) {
	t.Parallel()
	const user, password = "proxyuser", "Pr0xy-Pa55"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	for _, tt := range []struct {
		name   string
		answer func(auth string) string
	}{
		{"in the reason phrase", func(auth string) string { return "HTTP/1.1 407 " + auth }},
		{"after words in the reason phrase", func(auth string) string { return "HTTP/1.1 403 denied for " + auth }},
		{"as the status line", func(auth string) string { return "Proxy-Authorization: " + auth }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			proxy := echoingProxy(t, user, password, tt.answer)
			c, err := ResolveCloud("commercial", "https://api.example.test", "", "")
			if err != nil {
				t.Fatal(err)
			}
			client := NewClient(Options{Cloud: c, Credential: &fakeCredential{token: testToken},
				HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}})
			v := client.Offboard(context.Background(), testMachineID, "c")
			if v.Answered() {
				t.Fatalf("verdict = HTTP %d, want no answer", v.Status)
			}
			msg := v.Error()
			for _, s := range []string{basic, basic[:16], password, user} {
				if strings.Contains(msg, s) {
					t.Errorf("verdict message holds the proxy's credentials (%q): %s", s, msg)
				}
			}
		})
	}
}
