package mde

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestOffboardSentOnceOverHTTP2: a server that reads a whole offboard
// request and resets its stream with PROTOCOL_ERROR gets it once, and the
// call ends as an outcome unknown. (Go's HTTP/2 transport sent it again,
// on a new connection each time, until the call's timeout: hundreds of
// times in the test's 2 s.)
func TestOffboardSentOnceOverHTTP2(t *testing.T) {
	t.Parallel()
	var posts, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS() // for its certificate; the listener below serves
	srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: srv.TLS.Certificates, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go resetEveryRequest(c, &posts)
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	cloud, err := ResolveCloud("commercial", "https://"+ln.Addr().String(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(Options{Cloud: cloud, Credential: &fakeCredential{token: testToken},
		HTTPClient: &http.Client{Transport: tr}, Timeout: 2 * time.Second})
	v := c.Offboard(context.Background(), testMachineID, "retired")
	if got := posts.Load(); got != 1 {
		t.Errorf("the server got the offboard request %d times on %d connections, want once", got, conns.Load())
	}
	if !v.Sent || v.Class != Retry || v.Reason != ReasonNetwork {
		t.Errorf("verdict %+v, want sent, an outcome unknown (%s)", v, ReasonNetwork)
	}
}

// resetEveryRequest serves HTTP/2 on c, reading each request whole and
// answering it with RST_STREAM(PROTOCOL_ERROR).
func resetEveryRequest(c net.Conn, requests *atomic.Int64) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if fr.WriteSettings() != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		ended := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() && fr.WriteSettingsAck() != nil {
				return
			}
		case *http2.MetaHeadersFrame:
			ended = f.StreamEnded()
		case *http2.DataFrame:
			ended = f.StreamEnded()
		}
		if ended {
			requests.Add(1)
			if fr.WriteRSTStream(f.Header().StreamID, http2.ErrCodeProtocol) != nil {
				return
			}
		}
	}
}
