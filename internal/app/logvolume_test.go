package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// volumeEnv starts a worker whose log lines, debug included, the test
// reads.
func volumeEnv(t *testing.T, tenants []string, machines int) (*env, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	return setup(t, envConfig{
		tenants: tenants, machines: machines, logger: zap.New(core),
		sim: mdesim.Options{Unlimited: true}, limits: `["1000/1m"]`,
		extra: "      machineactions: [\"1000/1m\"]\n", // each 5xx of an offboard call is looked into
	}), logs
}

// warned is the lines of message msg logged at warn or above.
func warned(logs *observer.ObservedLogs, msg string) []observer.LoggedEntry {
	return logs.FilterMessage(msg).Filter(func(l observer.LoggedEntry) bool { return l.Level >= zap.WarnLevel }).All()
}

// linesPerTenant counts the lines of message msg at warn or above for
// each tenant.
func linesPerTenant(logs *observer.ObservedLogs, msg string) map[string]int {
	return perTenant(warned(logs, msg))
}

// perTenant counts lines by their tenant.
func perTenant(lines []observer.LoggedEntry) map[string]int {
	n := map[string]int{}
	for _, l := range lines {
		tenant, _ := l.ContextMap()["tenant"].(string)
		n[tenant]++
	}
	return n
}

// eachTenantLogged says whether each of the two tenants has at least
// times lines of message msg, at any level (those held back at debug
// too).
func eachTenantLogged(logs *observer.ObservedLogs, msg string, times int) func() bool {
	return func() bool {
		n := perTenant(logs.FilterMessage(msg).All())
		return n["contoso"] >= times && n["fabrikam"] >= times
	}
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
	for _, l := range warned(logs, "API call failed: trying again") {
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
	if n := len(warned(logs, "API answered 401: getting a new token")); n != 1 {
		t.Errorf("%d lines of the API's 401s, want 1 (all %d requests refused within a minute)", n, requests)
	}
}

// TestQuotaJournalGoneIsLoggedOnceAMinute: the quota journal's stream is
// deleted under a running worker with requests waiting. No call goes
// out; each request is handed back and taken again, over and over. That
// is logged once per tenant (the first, naming the journal), not once
// per request and hand-back: 800 lines in 20 s for 50 tenants, about
// 48,000 a minute with 1000.
func TestQuotaJournalGoneIsLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	e, logs := volumeEnv(t, []string{"contoso", "fabrikam"}, 4)
	if err := e.js.DeleteStream(t.Context(), offboard.StreamQuota); err != nil {
		t.Fatal(err)
	}
	for name := range e.tenants {
		e.offboardEach(name, name+"-", 0, 4)
	}
	eventually(t, 30*time.Second, "each tenant's requests handed back 5 times", eachTenantLogged(logs, "request left for redelivery", 5))
	got := linesPerTenant(logs, "request left for redelivery")
	for name := range e.tenants {
		if got[name] != 1 {
			t.Errorf("%s: %d lines of its requests handed back, want 1 within a minute", name, got[name])
		}
	}
	for _, l := range warned(logs, "request left for redelivery") {
		if err, _ := l.ContextMap()["error"].(string); !strings.Contains(err, "quota journal") {
			t.Errorf("line %v, want it to name the quota journal", l.ContextMap())
		}
	}
}

// TestNATSAwayIsLoggedOnceAMinutePerTenant: the NATS server goes down
// under a worker with requests waiting. Each tenant's fetch fails every
// few seconds until it is back; that is logged once per tenant (and the
// connection's loss once), not at every failed fetch: 196 lines in 20 s
// for 50 tenants, about 12,000 a minute with 1000.
func TestNATSAwayIsLoggedOnceAMinutePerTenant(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	core, logs := observer.New(zap.DebugLevel)
	e := setup(t, envConfig{machines: 40, limits: `["1/1s"]`, logger: zap.New(core), noStart: true})
	e.opts.NATSURL = c.URLs()
	e.start()
	for name := range e.tenants {
		e.offboardEach(name, name+"-", 0, 40)
	}
	c.Shutdown(0)
	eventually(t, 30*time.Second, "each tenant's fetch failed twice", eachTenantLogged(logs, "fetch request", 2))
	got := linesPerTenant(logs, "fetch request")
	for name := range e.tenants {
		if got[name] != 1 {
			t.Errorf("%s: %d lines of its failed fetches, want 1 within a minute", name, got[name])
		}
	}
	c.Restart(0)
}

// TestStoreRefusedIsLoggedOnceAMinute: the results stream refuses every
// result for a limit while four requests wait. Each is taken again every
// few seconds; the refusal, an error to act on, is logged once (whole,
// with what to do), not once per request and try.
func TestStoreRefusedIsLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	e, logs := volumeEnv(t, []string{"contoso"}, 5)
	fillResults(t, e, e.collect("mde.offboard.result.>"))
	e.offboardEach("contoso", "r", 1, 5)
	msg := "request left for redelivery: " + queue.StoreRefusedHint
	eventually(t, 30*time.Second, "the refused results tried 6 times", func() bool {
		return logs.FilterMessage(msg).Len() >= 6
	})
	if n := len(warned(logs, msg)); n != 1 {
		t.Errorf("%d lines of the refusal at error, want 1 within a minute", n)
	}
}

// TestCredentialsRefusedAreAnError: the login host refuses a tenant's
// secret (rotated in Entra ID, not in the worker's file). Every request
// fails unauthorized; the log says so as an error naming the tenant and
// what to do, once a minute. Before, only "request completed" at info
// told it: a log read from warn up showed nothing.
func TestCredentialsRefusedAreAnError(t *testing.T) {
	t.Parallel()
	const requests = 10
	e, logs := volumeEnv(t, []string{"contoso", "fabrikam"}, requests)
	tt := e.tenants["contoso"]
	e.sim.SetSecret(tt.tenantID, "rotated-"+newID())
	e.sim.RevokeTokens(tt.tenantID)
	res := e.collect("mde.offboard.result.>")
	for name := range e.tenants {
		e.offboardEach(name, name+"-", 0, requests)
	}
	res.wait(t, 2*requests, 30*time.Second)
	// Logged after the ack, which follows the result.
	eventually(t, 10*time.Second, "each request's completion logged", func() bool {
		return logs.FilterMessage("request completed").Len() == 2*requests
	})
	var told []observer.LoggedEntry
	for _, l := range logs.FilterLevelExact(zap.ErrorLevel).All() {
		if strings.Contains(l.Message, "credentials were refused") {
			told = append(told, l)
		}
	}
	if len(told) != 1 {
		t.Fatalf("%d errors of the refused credentials, want 1 for %d requests refused within a minute", len(told), requests)
	}
	if l := told[0]; l.ContextMap()["tenant"] != "contoso" || l.ContextMap()["code"] != "unauthorized" ||
		!strings.Contains(l.Message, "offboardctl dead retry") || strings.Contains(fmt.Sprint(l.ContextMap()), tt.secret) {
		t.Errorf("error %q %v, want it to name the tenant, the code and what to do, and no secret", l.Message, l.ContextMap())
	}
}
