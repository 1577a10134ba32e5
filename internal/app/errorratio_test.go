package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestAPIErrorRatioSeesANewStatusSeries: a quiet tenant's 5xx burst
// between two scrapes of a worker just started makes the series
// api_calls_total{status="500"} appear with its whole count, as the
// offboard calls' "201" does. MdeOffboardAPIErrorRatioHigh, evaluated by
// Prometheus' query engine over the real worker's scrapes, counts such a
// series, new within its window, at its whole value: 5 errors of 10 calls.
// Before, increase() saw nothing of a series before its first sample:
// the 5 errors read as none, and the alert could not fire.
func TestAPIErrorRatioSeesANewStatusSeries(t *testing.T) {
	t.Parallel()
	const n = 5
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: n})
	tt := e.tenants["contoso"]
	var s scraped
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	s.scrapeAt(t, e, start)

	// Each request's first call is answered 500, its retry 201.
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusInternalServerError, "InternalServerError", "An error has occurred.", n, 0)
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "r-", 0, n)
	res.wait(t, n, 30*time.Second)
	calls := func(status string) float64 {
		return metricValue(t, e, "mde_offboard_api_calls_total", map[string]string{"tenant": "contoso", "api": mde.APIOffboard, "status": status})
	}
	if calls("500") != n {
		t.Fatalf("%v calls answered 500, want %d", calls("500"), n)
	}
	for i := 1; i <= 3; i++ { // scraped each minute after the burst
		s.scrapeAt(t, e, start.Add(time.Duration(i)*time.Minute))
	}

	at := start.Add(3 * time.Minute)
	expr := alertExpr(t, "MdeOffboardAPIErrorRatioHigh")
	got := s.eval(t, expr, at)
	t.Logf("%v calls answered 500, %v 201; the alert's expression gives %v", calls("500"), calls("201"), got)
	if len(got) != 1 || got[0].Metric.Get("tenant") != "contoso" || got[0].Metric.Get("api") != mde.APIOffboard {
		t.Fatalf("MdeOffboardAPIErrorRatioHigh's expression over the scrapes: %v, want contoso's offboard calls", got)
	}
	if want := calls("500") / (calls("500") + calls("201")); got[0].F != want {
		t.Errorf("ratio %v, want %v", got[0].F, want)
	}
	// The increase alone, as the alert read it before: nothing.
	if v := s.eval(t, `sum by (tenant, api) (increase(mde_offboard_api_calls_total{status=~"5..|error"}[15m]))`, at); len(v) != 1 || v[0].F != 0 {
		t.Errorf("increase() of the errors: %v; the test expects it blind to the new series", v)
	}
}
