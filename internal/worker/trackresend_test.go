package worker

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestTrackingLookSentAgainLeavesTheLookupsTheirHalf: a look at a
// followed action takes quota only while half of every window stays
// free for the lookups offboard calls need; so does its request when the
// transport sends it again (the API dropped a reused connection without
// an answer). Before, the second send took its place as an offboard
// lookup's would: with 4 calls a minute, two looks left 1 place in the
// minute, not 2.
func TestTrackingLookSentAgainLeavesTheLookupsTheirHalf(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 2 {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		}
		id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		_, _ = io.WriteString(w, fmt.Sprintf(`{"id":%q,"type":"Offboard","status":"Pending"}`, id))
	}))
	defer srv.Close()
	defer srv.Client().Transport.(*http.Transport).CloseIdleConnections()
	client := mde.NewClient(mde.Options{Cloud: mde.Cloud{APIBaseURL: srv.URL, Scope: "scope"}, Credential: staticToken{},
		HTTPClient: srv.Client(), Timeout: 5 * time.Second})

	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	lt := limiter.NewTenant(clock)
	l := lt.Add(mde.APIMachineActions, []limiter.Window{{Count: 4, Length: time.Minute}})
	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	looks := tenantActions{c: c, t: &tenantRun{Tenant: &Tenant{Client: client}, name: "contoso", limits: lt}}
	for _, id := range []string{"act-1", "act-2"} { // the second on the first's connection
		p, err := looks.permit(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := looks.get(t.Context(), p, id); err != nil {
			t.Fatal(err)
		}
	}
	if left := l.Remaining(clock.Now()); left[0] < 2 {
		t.Errorf("%d places left in the minute after two looks (%d requests), want 2 of 4 for the offboard lookups", left[0], requests.Load())
	}
}
