package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
)

// TestTransportsSizedToTheCallsUnderWay: one client per CA bundle, keeping
// open a connection per call its tenants may have under way (maxInFlight,
// plus a lookup and a poll), capped.
func TestTransportsSizedToTheCallsUnderWay(t *testing.T) {
	t.Parallel()
	var tenants []*config.Tenant
	for range 3 {
		tenants = append(tenants, &config.Tenant{MaxInFlight: 4})
	}
	clients, err := transports(tenants)
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != 1 {
		t.Fatalf("%d clients for tenants of one CA bundle, want 1", len(clients))
	}
	if tr := clients[""].Transport.(*http.Transport); tr.MaxIdleConnsPerHost != 18 {
		t.Errorf("idle connections per host %d, want 18", tr.MaxIdleConnsPerHost)
	}
	for range 1000 {
		tenants = append(tenants, &config.Tenant{MaxInFlight: 4})
	}
	if clients, err = transports(tenants); err != nil {
		t.Fatal(err)
	}
	if tr := clients[""].Transport.(*http.Transport); tr.MaxIdleConnsPerHost != maxIdlePerHost {
		t.Errorf("1003 tenants: %d idle connections per host, want the cap %d", tr.MaxIdleConnsPerHost, maxIdlePerHost)
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
	clients, err := transports(tenants)
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
