package app

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// volumeEnv starts a worker whose log lines from info up the test reads.
func volumeEnv(t *testing.T, tenants []string, machines int) (*env, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	return setup(t, envConfig{
		tenants: tenants, machines: machines, logger: zap.New(core),
		sim: mdesim.Options{Unlimited: true}, limits: `["1000/1m"]`,
		extra: "      machineactions: [\"1000/1m\"]\n", // each 5xx of an offboard call is looked into
	}), logs
}

// linesPerTenant counts the lines of message msg for each tenant.
func linesPerTenant(logs *observer.ObservedLogs, msg string) map[string]int {
	n := map[string]int{}
	for _, l := range logs.FilterMessage(msg).All() {
		tenant, _ := l.ContextMap()["tenant"].(string)
		n[tenant]++
	}
	return n
}

// TestAPIFailingForEveryCallIsLoggedOnceAMinute: the API answers every
// offboard call 503, for two tenants of 20 requests each. Every request
// tries its 6 attempts and fails api_error; the retries are logged once
// per tenant (the first, with its request), not once per request and
// attempt: 100 warnings per tenant here, tens of thousands a minute with
// 1000 tenants.
func TestAPIFailingForEveryCallIsLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	const requests = 20
	e, logs := volumeEnv(t, []string{"contoso", "fabrikam"}, requests)
	for _, tt := range e.tenants {
		e.sim.InjectStatus(tt.tenantID, "offboard", 503, "ServiceUnavailable", "down", 1<<20, 0)
	}
	res := e.collect("mde.offboard.result.>")
	for name := range e.tenants {
		e.offboardEach(name, name+"-", 0, requests)
	}
	res.wait(t, 2*requests, 60*time.Second)
	got := linesPerTenant(logs, "API call failed: trying again")
	for name := range e.tenants {
		if got[name] != 1 {
			t.Errorf("%s: %d lines of its retries, want 1 (all %d requests failed within a minute)", name, got[name], requests)
		}
	}
	for _, l := range logs.FilterMessage("API call failed: trying again").All() {
		if l.Level != zap.WarnLevel || l.ContextMap()["request_id"] == nil || l.ContextMap()["answer"] == nil {
			t.Errorf("line %s %v, want a warning naming the request and the answer", l.Level, l.ContextMap())
		}
	}
	// Logged after the ack, which follows the result.
	eventually(t, 10*time.Second, "each request's completion logged", func() bool {
		return logs.FilterMessage("request completed").Len() == 2*requests
	})
}

// TestAPIRefusingEveryTokenIsLoggedOnceAMinute: the API answers every
// offboard call 401. Each request gets a new token once and fails
// unauthorized; the refusal is logged once per tenant, not once per
// request.
func TestAPIRefusingEveryTokenIsLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	const requests = 20
	e, logs := volumeEnv(t, []string{"contoso"}, requests)
	e.sim.InjectStatus(e.tenants["contoso"].tenantID, "offboard", 401, "Unauthorized", "token expired", 1<<20, 0)
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, requests)
	res.wait(t, requests, 60*time.Second)
	if n := logs.FilterMessage("API answered 401: getting a new token").Len(); n != 1 {
		t.Errorf("%d lines of the API's 401s, want 1 (all %d requests refused within a minute)", n, requests)
	}
}
