package app

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTokenFailuresOfTrackingAreCounted: the login host refusing the
// tenant's secret while only action tracking calls the API (no request
// in flight, so no unauthorized result) shows in
// mde_offboard_token_failures_total{reason="refused"}, a series that
// exists at zero from the start for every reason. Before, such a
// refusal showed in no metric at all: the tracker's looks fail no
// request, and a call without a token is no API call; and the alert,
// which counted unauthorized results alone, did not page.
func TestTokenFailuresOfTrackingAreCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, extra: fastTracking})
	tt := e.tenants["contoso"]
	failures := func(reason string) float64 {
		return metricValue(t, e, "mde_offboard_token_failures_total", map[string]string{"tenant": "contoso", "reason": reason})
	}
	var sc scraped // as Prometheus stores the worker's scrapes
	start := time.Now()
	sc.scrapeAt(t, e, start)
	var reasons []string
	mfs := scrape(t, e)
	if mf := mfs["mde_offboard_token_failures_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && m.GetCounter().GetValue() == 0 {
					reasons = append(reasons, lp.GetValue())
				}
			}
		}
	}
	slices.Sort(reasons)
	if want := []string{"credential", "error_answer", "no_answer", "other", "refused", "throttled"}; !slices.Equal(reasons, want) {
		t.Errorf("token failure series at the start: %v, want %v at zero", reasons, want)
	}

	events := e.actionEvents()
	e.offboardEach("contoso", "t-", 0, 1)
	eventually(t, 10*time.Second, "the action followed", func() bool { return len(events()) == 1 })
	eventually(t, 5*time.Second, "the request done", func() bool {
		return metricValue(t, e, "mde_offboard_in_flight_requests", map[string]string{"tenant": "contoso"}) == 0
	})
	// The secret rotated away from the worker's, its tokens revoked: the
	// tracker's next look gets no token.
	rotated := "s3cr3t-rotated-" + newID()
	e.sim.SetSecret(tt.tenantID, rotated)
	e.sim.RevokeTokens(tt.tenantID)
	t0 := time.Now()
	eventually(t, 30*time.Second, "a refused token counted", func() bool { return failures("refused") >= 1 })
	if n := metricValue(t, e, "mde_offboard_results_total", map[string]string{"tenant": "contoso", "code": "unauthorized"}); n != 0 {
		t.Errorf("%v unauthorized results: the refusal was met by a request, not by tracking alone", n)
	}
	t.Logf("after %v: token failures of contoso: refused %v, others %v", time.Since(t0), failures("refused"),
		failures("throttled")+failures("error_answer")+failures("no_answer")+failures("credential")+failures("other"))

	// Read by Prometheus' query engine over the worker's scrapes, the
	// refusal pages MdeOffboardCredentialsRejected.
	sc.scrapeAt(t, e, start.Add(time.Minute))
	sc.scrapeAt(t, e, start.Add(2*time.Minute))
	if got := sc.eval(t, alertExpr(t, "MdeOffboardCredentialsRejected"), start.Add(2*time.Minute)); len(got) != 1 || got[0].Metric.Get("tenant") != "contoso" {
		t.Errorf("MdeOffboardCredentialsRejected over the scrapes: %v, want contoso", got)
	}

	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), rotated) || strings.Contains(string(body), "AADSTS") {
		t.Error("/metrics carries the secret or the login host's text")
	}
}
