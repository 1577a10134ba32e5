package app

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnreachableAPIHostMakesNoCall: a tenant whose API host refuses
// every connection (a firewall, a wrong port in apiBaseURL) sends no
// offboard call. Its request fails api_error after its retries, with no
// offboard call counted in the result (a dead letter of a request that
// made none is retried whatever the ledger's age), and saying that
// nothing was sent.
func TestUnreachableAPIHostMakesNoCall(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(nil)
	closed.Close()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, tweak: func(f *config.File) {
		f.Tenants[0].Resolved.Cloud.APIBaseURL = strings.Replace(closed.URL, "http://", "https://", 1)
	}})
	m := e.tenants["contoso"].machines
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": m[0].ID}, "r1")
	got := res.wait(t, 1, 30*time.Second)
	rs := got["contoso/r1"]
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeFailed || rs[0].Error == nil {
		t.Fatalf("results %+v, want one failed", rs)
	}
	r := rs[0]
	t.Logf("result: attempts %d, %s %q", r.Attempts, r.Error.Code, r.Error.Message)
	if r.Attempts != 0 || r.Error.Code != offboard.CodeAPIError || !strings.Contains(r.Error.Message, "not sent") {
		t.Errorf("result: attempts %d, %s %q; want 0 attempts, %s saying nothing was sent", r.Attempts, r.Error.Code, r.Error.Message, offboard.CodeAPIError)
	}
	// The attempts still show as calls without an answer, which the
	// error ratio's alert reads.
	if n := metricValue(t, e, "mde_offboard_api_calls_total", map[string]string{"tenant": "contoso", "api": "offboard", "status": "error"}); n < 1 {
		t.Errorf("mde_offboard_api_calls_total{status=\"error\"} = %v, want the attempts counted", n)
	}
}
