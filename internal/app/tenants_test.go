package app

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCredentialKindsSideBySide runs a tenant that logs in with a client
// secret, one with a certificate and one with a workload identity token.
func TestCredentialKindsSideBySide(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 3, tenants: []string{"contoso", "fabrikam", "northwind"},
		certs: []string{"fabrikam"}, workload: []string{"northwind"}})
	c := e.collect("mde.offboard.result.>")
	for _, name := range []string{"contoso", "fabrikam", "northwind"} {
		for i, m := range e.tenants[name].machines {
			id := fmt.Sprintf("%s-%d", name, i)
			e.publish("mde.offboard.request."+name, map[string]any{"requestId": id, "machineId": m.ID}, id)
		}
	}
	for key, rs := range c.wait(t, 9, 20*time.Second) {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: %+v", key, rs)
		}
	}
	for name, tt := range e.tenants {
		if n := e.sim.TokenRequests(tt.tenantID); n != 1 {
			t.Errorf("%s: %d token requests, want 1 (cached)", name, n)
		}
	}
	// The certificate's end shows for the tenant that signs with one, and
	// for no other.
	const expiry = "mde_offboard_certificate_expiry_timestamp_seconds"
	if at := metricValue(t, e, expiry, map[string]string{"tenant": "fabrikam"}); at < float64(time.Now().Unix()) {
		t.Errorf("%s of fabrikam = %v, want its certificate's end, after now", expiry, at)
	}
	if at := metricValue(t, e, expiry, nil); at != metricValue(t, e, expiry, map[string]string{"tenant": "fabrikam"}) {
		t.Errorf("%s sums to %v over every tenant: a tenant without a certificate has it", expiry, at)
	}
}

// TestSecretRotationWithoutRestart: a tenant starts with a stale secret in
// its file; once the file holds the new one, requests go through, without a
// restart.
func TestSecretRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	fresh := "rotated-" + newID()
	e.sim.SetSecret(tt.tenantID, fresh) // the old secret is revoked
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "rot-1", "machineId": tt.machines[0].ID})
	if r.Error == nil || r.Error.Code != offboard.CodeUnauthorized {
		t.Fatalf("with the revoked secret: %+v, want unauthorized", r)
	}
	// No token, no offboard call: attempts counts the calls made.
	if r.Attempts != 0 || e.offboardCalls(tt.tenantID, tt.machines[0].ID) != 0 {
		t.Errorf("with the revoked secret: %d attempts, %d offboard calls; want none", r.Attempts, e.offboardCalls(tt.tenantID, tt.machines[0].ID))
	}
	path := filepath.Join(e.dir, "contoso.secret")
	if err := os.WriteFile(path, []byte(fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(path, later, later)
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "rot-2", "machineId": tt.machines[1].ID})
	if r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("after the file was rotated: %+v, want created", r)
	}
}

// TestUnauthorizedRefreshesTokenOnce: a 401 to a cached token makes the
// worker get a new token and try once more.
func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	if r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "u-0", "machineId": tt.machines[0].ID}); r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("first request: %+v", r)
	}
	before := e.sim.TokenRequests(tt.tenantID)
	e.sim.InjectStatus(tt.tenantID, "offboard", http.StatusUnauthorized, "Unauthorized", "token revoked", 1, 0)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "u-1", "machineId": tt.machines[1].ID})
	if r.Outcome != offboard.OutcomeCreated || r.Attempts != 2 {
		t.Errorf("after one 401: %+v, want created in 2 attempts", r)
	}
	if n := e.sim.TokenRequests(tt.tenantID) - before; n != 1 {
		t.Errorf("%d new token requests after the 401, want 1", n)
	}
	// Two 401s in a row: the new token is refused too, so it is final.
	e.sim.InjectStatus(tt.tenantID, "offboard", http.StatusUnauthorized, "Unauthorized", "no", 2, 0)
	e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: "x.contoso.local", OSPlatform: "Windows11"})
	ms := e.sim.Machines(tt.tenantID)
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "u-2", "machineId": ms[len(ms)-1].ID})
	if r.Error == nil || r.Error.Code != offboard.CodeUnauthorized || r.Attempts != 2 {
		t.Errorf("after two 401s: %+v, want unauthorized after 2 attempts", r)
	}
}

// TestFaultyAPI runs 200 requests against an API that answers 5% of calls
// with a 500 and 2% of device calls with a spurious 404.
func TestFaultyAPI(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 100,
		sim: mdesim.Options{FailRate: 0.05, Spurious404Rate: 0.02, Rand: rand.New(rand.NewPCG(7, 7)),
			Limits: map[string][]mdesim.Window{"offboard": {{Count: 1000, Length: time.Minute}}}},
		limits: `["1000/1m"]`, // retries would otherwise wait for the next minute
	})
	c := e.collect("mde.offboard.result.>")
	for _, name := range []string{"contoso", "fabrikam"} {
		for i, m := range e.tenants[name].machines {
			id := fmt.Sprintf("%s-%03d", name, i)
			e.publish("mde.offboard.request."+name, map[string]any{"requestId": id, "machineId": m.ID}, id)
		}
	}
	got := c.wait(t, 200, 60*time.Second)
	for key, rs := range got {
		if len(rs) != 1 || (rs[0].Outcome != offboard.OutcomeCreated && rs[0].Outcome != offboard.OutcomeAlreadyPending) {
			t.Errorf("%s: %d results, first %+v", key, len(rs), rs[0])
		}
	}
	faults := 0
	for _, call := range e.sim.Calls() {
		if call.Status == http.StatusInternalServerError || call.Status == http.StatusNotFound {
			faults++
		}
	}
	for name := range e.tenants {
		e.oneActionEach(name, 100)
	}
	if faults == 0 {
		t.Error("the simulator injected no fault: the test shows nothing")
	}
	t.Logf("%d faults injected over %d calls", faults, len(e.sim.Calls()))
}

// TestTracking follows created actions from Pending to Succeeded and
// publishes each change, using at most half of the machineactions quota.
func TestTracking(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 6, tenants: []string{"contoso"},
		sim: mdesim.Options{
			ActionCompleteAfter: 1500 * time.Millisecond,
			Limits:              map[string][]mdesim.Window{"machineactions": {{Count: 4, Length: time.Second}}},
		},
		extra: `      machineactions: ["4/1s"]
    tracking:
      enabled: true
      firstCheck: 200ms
      maxInterval: 400ms
`,
	})
	events := e.actionEvents()
	e.offboardEach("contoso", "t-", 0, 6)
	allSucceeded(t, events, 6)
	for id, evs := range events() {
		if len(evs) != 2 || evs[0].Status != "Pending" || evs[1].Status != "Succeeded" || evs[1].PreviousStatus != "Pending" || evs[0].RequestID == "" {
			t.Errorf("action %s: events %+v, want Pending then Succeeded", id, evs)
		}
	}
	if n := e.sim.MaxInWindow(e.tenants["contoso"].tenantID, "machineactions", mdesim.Window{Count: 4, Length: time.Second}); n > 2 {
		t.Errorf("tracking made %d calls in one second: more than half of the 4/1s quota", n)
	}
	// Nothing left to follow in the ledger: each ended mark is written
	// once its final event is stored, a moment after the event arrives.
	eventually(t, 10*time.Second, "no action followed after completion", func() bool {
		return e.followed("contoso") == 0
	})
}

// TestTrackingGivesUpAtMaxAge: an action that stays Pending (a device that
// never comes back) is followed until maxAge, then a final event says so.
func TestTrackingGivesUpAtMaxAge(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 1, tenants: []string{"contoso"},
		extra: fastTracking + `      maxAge: 600ms
`,
	})
	all := e.actionEvents()
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "old-1", "machineId": e.tenants["contoso"].machines[0].ID}, "old-1")
	var events []worker.ActionEvent
	eventually(t, 10*time.Second, "a final event", func() bool {
		for _, evs := range all() {
			events = evs
		}
		return len(events) > 0 && events[len(events)-1].Final
	})
	if len(events) != 2 || events[0].Status != "Pending" || events[1].Status != "Pending" || !events[1].Final {
		t.Errorf("events %+v, want Pending, then Pending with final", events)
	}
}

// offboardEach publishes one request for each of the tenant's machines from
// to to, with request id (and message id) prefix+index.
func (e *env) offboardEach(tenant, prefix string, from, to int) {
	e.t.Helper()
	for i := from; i < to; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		e.publish("mde.offboard.request."+tenant, map[string]any{"requestId": id, "machineId": e.tenants[tenant].machines[i].ID}, id)
	}
}

// allSucceeded waits until n actions have a final Succeeded event.
func allSucceeded(t *testing.T, events func() map[string][]worker.ActionEvent, n int) {
	t.Helper()
	eventually(t, 30*time.Second, "every action followed to Succeeded", func() bool {
		done := 0
		for _, evs := range events() {
			if last := evs[len(evs)-1]; last.Status == "Succeeded" && last.Final {
				done++
			}
		}
		return done == n
	})
}

// actionEvents collects the action events published from now on; the
// returned func gives them by action id.
func (e *env) actionEvents() func() map[string][]worker.ActionEvent {
	e.t.Helper()
	var (
		mu     sync.Mutex
		events = map[string][]worker.ActionEvent{}
	)
	cons, err := e.js.OrderedConsumer(e.t.Context(), offboard.StreamResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mde.offboard.action.>"}})
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev worker.ActionEvent
		if json.Unmarshal(m.Data(), &ev) == nil {
			mu.Lock()
			events[ev.ActionID] = append(events[ev.ActionID], ev)
			mu.Unlock()
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cc.Stop)
	return func() map[string][]worker.ActionEvent {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string][]worker.ActionEvent, len(events))
		for k, v := range events {
			out[k] = append([]worker.ActionEvent(nil), v...)
		}
		return out
	}
}

// TestRefusedSecretSentOnceForTheQueue: the login host refuses the
// tenant's secret (rotated in Entra ID, not in the worker's file) while
// requests of the tenant wait. Each is answered unauthorized and copied
// to the dead letters, as before, and the secret is sent once for them
// all: each request sent it again, a burst of failed sign-ins.
func TestRefusedSecretSentOnceForTheQueue(t *testing.T) {
	t.Parallel()
	const requests = 30
	e := setup(t, envConfig{machines: requests, tenants: []string{"contoso"}})
	tt := e.tenants["contoso"]
	e.sim.SetSecret(tt.tenantID, "rotated-"+newID())
	c := e.collect("mde.offboard.result.>")
	e.control("pause", "contoso", "all")
	e.offboardEach("contoso", "q-", 0, requests)
	e.control("resume", "contoso", "all")
	for key, rs := range c.wait(t, requests, 30*time.Second) {
		if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnauthorized || rs[0].Attempts != 0 {
			t.Errorf("%s: %+v, want one unauthorized result, no call", key, rs)
		}
	}
	eventually(t, 10*time.Second, "every request dead-lettered", func() bool { return e.streamMsgs(offboard.StreamDead) == requests })
	if n := e.sim.TokenRequests(tt.tenantID); n != 1 {
		t.Errorf("login requests for %d waiting requests refused = %d, want 1", requests, n)
	}
}
