package app

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestTransportsSizedToTheCallsUnderWay: one client per CA bundle, keeping
// open a connection per call its tenants may have under way: maxInFlight
// each, no more than the worker's bound on requests, and a poll for a
// tenant that tracks its actions; capped.
func TestTransportsSizedToTheCallsUnderWay(t *testing.T) {
	t.Parallel()
	busy := func(n int, tracking bool) (ts []*config.Tenant) {
		for range n {
			ts = append(ts, &config.Tenant{MaxInFlight: 4, Tracking: config.Tracking{Enabled: tracking}})
		}
		return ts
	}
	for _, tc := range []struct {
		name        string
		tenants     []*config.Tenant
		maxRequests int
		want        int
	}{
		{"3 tenants", busy(3, false), 512, 12},
		{"3 tenants, 1 tracking", append(busy(2, false), busy(1, true)...), 512, 13},
		{"1000 tenants, bound 512", busy(1000, false), 512, 512},
		{"1000 tenants, 10 tracking, bound 512", append(busy(990, false), busy(10, true)...), 512, 522},
		{"1000 tenants, bound 384", busy(1000, false), 384, 384},
		{"1000 tenants, no bound", busy(1000, false), -1, maxIdlePerHost},
		{"1000 tenants tracking, bound 1000", busy(1000, true), 1000, maxIdlePerHost},
	} {
		clients, err := transports(tc.tenants, tc.maxRequests, mde.DefaultTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if len(clients) != 1 {
			t.Fatalf("%s: %d clients for tenants of one CA bundle, want 1", tc.name, len(clients))
		}
		if got := clients[""].Transport.(*http.Transport).MaxIdleConnsPerHost; got != tc.want {
			t.Errorf("%s: %d idle connections per host, want %d", tc.name, got, tc.want)
		}
	}
}

// TestHangingTenantsDoNotStarveOthers: the calls of 171 tenants (6 each)
// that hang hold 1026 connections to the API host; another tenant's call
// still gets one at once. (With the connections per host capped at the
// idle cap, it waited for its timeout.)
func TestHangingTenantsDoNotStarveOthers(t *testing.T) {
	t.Parallel()
	var tenants []*config.Tenant
	for range 1000 {
		tenants = append(tenants, &config.Tenant{MaxInFlight: 4})
	}
	clients, err := transports(tenants, -1, mde.DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	hc := clients[""]
	release := make(chan struct{})
	var hanging atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			hanging.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	const slow = 171 * 6
	for range slow {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
			if resp, err := hc.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for hanging.Load() < maxIdlePerHost && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	req, _ := http.NewRequestWithContext(fctx, http.MethodGet, srv.URL+"/fast", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("a healthy tenant's call, behind %d hanging calls of other tenants: %v", hanging.Load(), err)
	} else {
		_ = resp.Body.Close()
	}
	close(release)
	cancel()
	wg.Wait()
	hc.CloseIdleConnections()
}

// TestAPICallsShareAConnectionOverHTTP2: against a host that offers
// HTTP/2, 200 calls under way at once, of 50 tenants, share one
// connection instead of opening one each. (At 1000 busy tenants over
// HTTP/1.1 the worker held 1036 open files and a third more memory.)
func TestAPICallsShareAConnectionOverHTTP2(t *testing.T) {
	t.Parallel()
	const calls = 200
	var conns, underWay atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		if r.URL.Path == "/first" {
			return
		}
		underWay.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.EnableHTTP2 = true
	// Room for every call on one connection (Go's default, said here).
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: calls + 50}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var tenants []*config.Tenant
	for range 50 {
		tenants = append(tenants, &config.Tenant{MaxInFlight: 4, CAFile: caFile})
	}
	clients, err := transports(tenants, -1, mde.DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	hc := clients[caFile]
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func(path string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	statuses := make(chan string, calls+1)
	var wg sync.WaitGroup
	call := func() {
		code, err := get("/")
		if err != nil {
			statuses <- err.Error()
		} else {
			statuses <- http.StatusText(code)
		}
	}
	// Waits until n calls are under way; a call that ends before is one
	// the server refused (not HTTP/2).
	waitUnderWay := func(n int64) {
		t.Helper()
		for underWay.Load() < n {
			select {
			case s := <-statuses:
				t.Fatalf("a call ended while the others were under way: %s (%d connections)", s, conns.Load())
			case <-ctx.Done():
				t.Fatalf("%d of %d calls under way after 30 s", underWay.Load(), n)
			case <-time.After(time.Millisecond):
			}
		}
	}
	// A first call, answered at once, opens the connection the others
	// find. Answered, it has also brought the server's settings: calls
	// started before the client reads them count on 100 streams a
	// connection, and Go opens more connections for the calls beyond.
	if code, err := get("/first"); err != nil || code != http.StatusOK {
		t.Fatalf("first call: %d, %v", code, err)
	}
	for range calls {
		wg.Go(call)
	}
	waitUnderWay(calls)
	if got := conns.Load(); got != 1 {
		t.Errorf("%d calls under way on %d connections, want 1", calls, got)
	}
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusText(http.StatusOK) {
			t.Errorf("a call: %s", s)
		}
	}
}
