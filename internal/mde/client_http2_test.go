package mde

import (
	"bytes"
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
// call ends as an outcome unknown; a read, at most twice. (Go's HTTP/2
// transport sent each again, on a new connection each time, until the
// call's timeout: over a thousand times in the test's 2 s.)
func TestOffboardSentOnceOverHTTP2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		call func(*Client) *Verdict
		most int64
	}{
		{"offboard", func(c *Client) *Verdict { return c.Offboard(context.Background(), testMachineID, "retired") }, 1},
		{"read", func(c *Client) *Verdict { return c.FindMachinesByName(context.Background(), "pc-0001") }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests, conns atomic.Int64
			c := http2Client(t, func(c net.Conn) {
				conns.Add(1)
				serveH2(c, &requests, func(fr *http2.Framer, stream uint32, _ int64) bool {
					_ = fr.WriteRSTStream(stream, http2.ErrCodeProtocol)
					return true
				})
			})
			v := tc.call(c)
			if got := requests.Load(); got < 1 || got > tc.most {
				t.Errorf("the server got the request %d times on %d connections, want 1 to %d", got, conns.Load(), tc.most)
			}
			if !v.Sent || v.Class != Retry || v.Reason != ReasonNetwork {
				t.Errorf("verdict %+v, want sent, an outcome unknown (%s)", v, ReasonNetwork)
			}
		})
	}
}

// TestSafeResendsGoAhead: the transport's resend of a request the server
// did not act on goes ahead, once: a stream the server refused, a request
// caught by a graceful shutdown (GOAWAY), a reused HTTP/1.1 connection the
// server closed as the request came.
func TestSafeResendsGoAhead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		refuse func(fr *http2.Framer, stream uint32, n int64) bool
	}{
		{"refused stream", func(fr *http2.Framer, stream uint32, n int64) bool {
			if n == 2 {
				_ = fr.WriteRSTStream(stream, http2.ErrCodeRefusedStream)
			}
			return n == 2
		}},
		{"shutdown", func(fr *http2.Framer, stream uint32, n int64) bool {
			if n == 2 {
				_ = fr.WriteGoAway(stream-2, http2.ErrCodeNo, nil) // the last stream it acted on
			}
			return n == 2
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			c := http2Client(t, func(c net.Conn) { serveH2(c, &requests, tc.refuse) })
			if v := c.FindMachinesByName(context.Background(), "pc-0001"); v.Class != Success {
				t.Fatalf("first read: %+v", v)
			}
			if v := c.FindMachinesByName(context.Background(), "pc-0002"); v.Class != Success || requests.Load() != 3 {
				t.Errorf("a read the server did not act on: %+v after %d requests, want a success after 3", v, requests.Load())
			}
		})
	}
	t.Run("keep-alive closed", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if requests.Add(1) == 2 {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = conn.Close()
				}
				return
			}
			_, _ = io.WriteString(w, `{"value":[]}`)
		}))
		srv.StartTLS() // HTTP/1.1
		defer srv.Close()
		c := clientFor(t, srv.URL, srv.Certificate())
		if v := c.FindMachinesByName(context.Background(), "pc-0001"); v.Class != Success {
			t.Fatalf("first read: %+v", v)
		}
		if v := c.FindMachinesByName(context.Background(), "pc-0002"); v.Class != Success || requests.Load() != 3 {
			t.Errorf("a read on a connection closed under it: %+v after %d requests, want a success after 3", v, requests.Load())
		}
	})
}

// TestCallsOverHTTP2: the guard against resends leaves ordinary calls
// alone, over HTTP/2 as over HTTP/1.1 (the other tests).
func TestCallsOverHTTP2(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, pendingAction)
			return
		}
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := clientFor(t, srv.URL, srv.Certificate())
	for range 3 {
		if v := c.Offboard(context.Background(), testMachineID, "retired"); v.Class != Success {
			t.Errorf("offboard: %+v", v)
		}
		if v := c.FindMachinesByName(context.Background(), "pc-0001"); v.Class != Success {
			t.Errorf("read: %+v", v)
		}
	}
}

// http2Client is a Client of an HTTP/2 server on 127.0.0.1 whose
// connections serve hands over.
func http2Client(t *testing.T, serve func(net.Conn)) *Client {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS() // for its certificate; the listener below serves
	srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: srv.TLS.Certificates, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return clientFor(t, "https://"+ln.Addr().String(), srv.Certificate())
}

// clientFor is a Client of base, trusting cert, attempting HTTP/2, each
// call timing out after 2 s.
func clientFor(t *testing.T, base string, cert *x509.Certificate) *Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	cloud, err := ResolveCloud("commercial", base, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return NewClient(Options{Cloud: cloud, Credential: &fakeCredential{token: testToken},
		HTTPClient: &http.Client{Transport: tr}, Timeout: 2 * time.Second})
}

// serveH2 serves HTTP/2 on c, reading each request whole, counting it in
// requests, and handing it to refuse with its number (from 1, over every
// connection); a request refuse does not answer gets 200 {"value":[]}.
func serveH2(c net.Conn, requests *atomic.Int64, refuse func(fr *http2.Framer, stream uint32, n int64) bool) {
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
		if !ended {
			continue
		}
		id := f.Header().StreamID
		if refuse(fr, id, requests.Add(1)) {
			continue
		}
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/json"})
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}) != nil ||
			fr.WriteData(id, true, []byte(`{"value":[]}`)) != nil {
			return
		}
	}
}
