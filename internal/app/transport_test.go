package app

import (
	"net/http"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/config"
)

// TestTransportsSizedToTheCallsUnderWay: one client per CA bundle, keeping
// open and opening at most a connection per call its tenants may have
// under way (maxInFlight, plus a lookup and a poll), capped.
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
	tr := clients[""].Transport.(*http.Transport)
	if tr.MaxConnsPerHost != 18 || tr.MaxIdleConnsPerHost != 18 {
		t.Errorf("connections per host: at most %d, idle %d; want 18 and 18", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost)
	}

	for range 1000 {
		tenants = append(tenants, &config.Tenant{MaxInFlight: 4})
	}
	clients, err = transports(tenants)
	if err != nil {
		t.Fatal(err)
	}
	if tr := clients[""].Transport.(*http.Transport); tr.MaxConnsPerHost != maxConnsPerHost {
		t.Errorf("1003 tenants: at most %d connections per host, want the cap %d", tr.MaxConnsPerHost, maxConnsPerHost)
	}
}
