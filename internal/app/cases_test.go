package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// one publishes a request for contoso and waits for its result.
func (e *env) one(c *collector, subject string, body map[string]any) offboard.Result {
	e.t.Helper()
	id, _ := body["requestId"].(string)
	before := len(c.snapshot()) // before publishing: the result may come at once
	e.publish(subject, body, id)
	got := c.wait(e.t, before+1, 20*time.Second)
	rs := got["contoso/"+id]
	if len(rs) != 1 {
		e.t.Fatalf("%s: %d results", id, len(rs))
	}
	return rs[0]
}

func (c *collector) snapshot() map[string][]offboard.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]offboard.Result, len(c.byKey))
	for k, v := range c.byKey {
		out[k] = append([]offboard.Result(nil), v...)
	}
	return out
}

// wantOneCreatedEach fails t for each request id without exactly one
// result, created, and returns the results.
func (c *collector) wantOneCreatedEach(t *testing.T) map[string][]offboard.Result {
	t.Helper()
	got := c.snapshot()
	for key, rs := range got {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			var outs []string
			for _, r := range rs {
				code := ""
				if r.Error != nil {
					code = "/" + r.Error.Code
				}
				outs = append(outs, r.Outcome+code)
			}
			t.Errorf("%s: results %v, want one created", key, outs)
		}
	}
	return got
}

func (e *env) offboardCalls(tenantID, machineID string) int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.TenantID == tenantID && c.API == "offboard" && c.MachineID == machineID {
			n++
		}
	}
	return n
}

func TestUnknownTenant(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1})
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.northwind", map[string]any{"requestId": "nw-1", "machineId": strings.Repeat("a", 40)}, "nw-1")
	e.publish("mde.offboard.request.contoso.urgent", map[string]any{"requestId": "odd-1", "machineId": strings.Repeat("b", 40)}, "odd-1")
	got := c.wait(t, 2, 10*time.Second)
	if r := got["northwind/nw-1"]; len(r) != 1 || r[0].Error == nil || r[0].Error.Code != offboard.CodeUnknownTenant || r[0].Priority != offboard.Normal {
		t.Errorf("northwind: %+v, want unknown_tenant, priority normal", r)
	}
	// A subject of no contract form has no priority to give.
	if r := got["contoso/odd-1"]; len(r) != 1 || r[0].Error == nil || r[0].Error.Code != offboard.CodeInvalidRequest || r[0].Priority != "" {
		t.Errorf("contoso.urgent: %+v, want invalid_request, no priority", r)
	}
	if n := len(e.sim.Calls()); n != 0 {
		t.Errorf("%d API calls, want none", n)
	}
	// Dead letters keep the original body and headers, plus the failure.
	cons, err := e.js.OrderedConsumer(t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Headers()
	if h.Get(jetstream.MsgIDHeader) == "" || h.Get(offboard.HeaderErrorCode) == "" || h.Get(offboard.HeaderRequestSeq) == "" || h.Get(offboard.HeaderErrorMessage) == "" {
		t.Errorf("dead letter headers %v", h)
	}
	if !strings.Contains(string(msg.Data()), `"requestId":"`) {
		t.Errorf("dead letter body %q is not the original request", msg.Data())
	}
	eventually(t, 5*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
}

// TestUnroutedRequestsAreCounted: a request the unrouted consumer answers
// is a request received like any other: mde_offboard_requests_received_total
// counts it, under tenant "_unknown" for a tenant no replica serves, and
// without a priority for a subject of no contract form, as its result has
// none.
func TestUnroutedRequestsAreCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1})
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.northwind.bulk", map[string]any{"requestId": "nw-1", "machineId": strings.Repeat("a", 40)}, "nw-1")
	e.publish("mde.offboard.request.contoso.urgent", map[string]any{"requestId": "odd-1", "machineId": strings.Repeat("b", 40)}, "odd-1")
	c.wait(t, 2, 10*time.Second)
	if v := metricValue(t, e, "mde_offboard_requests_received_total", map[string]string{"tenant": queue.UnknownTenant, "priority": "bulk"}); v < 1 {
		t.Errorf(`mde_offboard_requests_received_total{tenant="_unknown",priority="bulk"} = %v, want at least 1`, v)
	}
	if v := metricValue(t, e, "mde_offboard_requests_received_total", map[string]string{"tenant": "contoso", "priority": ""}); v < 1 {
		t.Errorf(`mde_offboard_requests_received_total{tenant="contoso",priority=""} = %v, want at least 1`, v)
	}
}

func TestHostNames(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 3, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	// A re-imaged device keeps its old record under the same name.
	old := mdesim.Machine{ID: newID(), ComputerDNSName: "PC-0001.contoso.local", OSPlatform: "Windows10", HealthStatus: "Inactive", LastSeen: time.Now().Add(-60 * 24 * time.Hour)}
	e.sim.AddMachine(tt.tenantID, old)

	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-1", "computerDnsName": tt.machines[0].ComputerDNSName})
	if r.Outcome != offboard.OutcomeCreated || r.MachineID != tt.machines[0].ID {
		t.Errorf("resolved name: %+v", r)
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-2", "computerDnsName": "pc-0001.contoso.local"})
	if r.Outcome != offboard.OutcomeFailed || r.Error.Code != offboard.CodeAmbiguousMachine || len(r.Error.Candidates) != 2 {
		t.Fatalf("ambiguous name: %+v", r)
	}
	ids := map[string]bool{r.Error.Candidates[0].MachineID: true, r.Error.Candidates[1].MachineID: true}
	if !ids[old.ID] || !ids[tt.machines[1].ID] || r.Error.Candidates[0].LastSeen == "" || r.Error.Candidates[0].HealthStatus == "" {
		t.Errorf("candidates %+v, want both devices with last-seen and health", r.Error.Candidates)
	}
	if n := e.offboardCalls(tt.tenantID, old.ID) + e.offboardCalls(tt.tenantID, tt.machines[1].ID); n != 0 {
		t.Errorf("an ambiguous name led to %d offboard calls", n)
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-3", "computerDnsName": "nowhere.contoso.local"})
	if r.Error == nil || r.Error.Code != offboard.CodeMachineNotFound {
		t.Errorf("unknown name: %+v", r)
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-4", "computerDnsName": "o'brien.contoso.local"})
	if r.Error == nil || r.Error.Code != offboard.CodeInvalidRequest || len(e.sim.Calls()) != 4 {
		t.Errorf("a name with a quote: %+v after %d calls; want invalid_request and no call", r, len(e.sim.Calls()))
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-5", "computerDnsName": tt.machines[2].ComputerDNSName, "dryRun": true})
	if r.Outcome != offboard.OutcomeDryRun || r.MachineID != tt.machines[2].ID || e.offboardCalls(tt.tenantID, tt.machines[2].ID) != 0 {
		t.Errorf("dry run: %+v", r)
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-6", "machineId": tt.machines[2].ID, "dryRun": true})
	if r.Outcome != offboard.OutcomeDryRun || r.ComputerDNSName != tt.machines[2].ComputerDNSName || e.offboardCalls(tt.tenantID, tt.machines[2].ID) != 0 {
		t.Errorf("dry run by id: %+v", r)
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "n-7", "machineId": newID(), "dryRun": true})
	if r.Error == nil || r.Error.Code != offboard.CodeMachineNotFound {
		t.Errorf("dry run of an unknown device: %+v, want machine_not_found", r)
	}
}

// A name shared by more devices than a result lists (a pool of cloned
// desktops) is answered ambiguous_machine with the first hundred, and a
// text of the API's longer than any value of its kind is left out of a
// result: listed whole, they could make a result too large to store,
// which brings its request back for ever.
func TestAmbiguousNameOfManyDevices(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	for i := range 150 {
		health := "Inactive"
		if i == 0 {
			health = strings.Repeat("h", 300)
		}
		e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: "vdi.contoso.local", OSPlatform: "Windows10", HealthStatus: health, LastSeen: time.Now().Add(-time.Hour)})
	}
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "vdi-1", "computerDnsName": "vdi.contoso.local"})
	if r.Error == nil || r.Error.Code != offboard.CodeAmbiguousMachine || len(r.Error.Candidates) != 100 ||
		!strings.Contains(r.Error.Message, "150 devices") || !strings.Contains(r.Error.Message, "first 100") {
		t.Fatalf("a name of 150 devices: %s, %d candidates", r.Outcome, len(r.Error.Candidates))
	}
	for _, cand := range r.Error.Candidates {
		if len(cand.HealthStatus) > 255 || !offboard.ValidMachineID(cand.MachineID) {
			t.Errorf("candidate %.80q...", fmt.Sprint(cand))
		}
	}
	long := mdesim.Machine{ID: newID(), ComputerDNSName: strings.Repeat("x", 300) + ".contoso.local", OSPlatform: "Windows10", HealthStatus: "Active", LastSeen: time.Now()}
	e.sim.AddMachine(tt.tenantID, long)
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "long-1", "machineId": long.ID, "dryRun": true})
	if r.Outcome != offboard.OutcomeDryRun || r.ComputerDNSName != "" {
		t.Errorf("dry run of a device whose name is no DNS name: %s, computerDnsName of %d characters", r.Outcome, len(r.ComputerDNSName))
	}
	if n := len(e.sim.Calls()); e.offboardCalls(tt.tenantID, long.ID) != 0 {
		t.Errorf("%d calls, an offboard among them", n)
	}
}

// TestAmbiguousNameOfThousandsOfDevices: a name shared by 5,000 device
// records (a pool of desktops re-imaged for years) takes about 6 MiB to
// list, more than any single answer is read whole, and is answered
// ambiguous_machine with the first hundred and the count of all, not
// api_error for a list cut short.
func TestAmbiguousNameOfThousandsOfDevices(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	for range 5000 {
		e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: "vdi.contoso.local", OSPlatform: "Windows10",
			HealthStatus: "Inactive", MachineTags: []string{strings.Repeat("t", 1000)}, LastSeen: time.Now().Add(-time.Hour)})
	}
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "vdi-1", "computerDnsName": "vdi.contoso.local"})
	if r.Error == nil || r.Error.Code != offboard.CodeAmbiguousMachine || len(r.Error.Candidates) != 100 ||
		!strings.Contains(r.Error.Message, "5000 devices") || !strings.Contains(r.Error.Message, "first 100") {
		t.Fatalf("a name of 5,000 devices: %s %+v", r.Outcome, r.Error)
	}
	for _, call := range e.sim.Calls() {
		if call.API == "offboard" {
			t.Fatalf("an ambiguous name led to an offboard call: %+v", call)
		}
	}
}

// TestAmbiguousNameOfEscapedTexts: on a NATS server of the smallest
// max_payload the worker takes (128 KiB), a name shared by a hundred
// devices whose health state the API gives as 255 characters that JSON
// escapes (<, six bytes each) is answered ambiguous_machine, the text
// left out. Within 255 characters, the candidates took 150 KiB encoded:
// the result could never be stored, and the request came back for ever.
func TestAmbiguousNameOfEscapedTexts(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	e.opts.NATSURL = natstest.StartWithMaxPayload(t, 128<<10)
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	for range 100 {
		e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: "vdi.contoso.local", OSPlatform: "Windows10",
			HealthStatus: strings.Repeat("<", 255), LastSeen: time.Now().Add(-time.Hour)})
	}
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "vdi-1", "computerDnsName": "vdi.contoso.local"})
	if r.Error == nil || r.Error.Code != offboard.CodeAmbiguousMachine || len(r.Error.Candidates) != 100 || r.Error.Candidates[0].HealthStatus != "" {
		t.Fatalf("a name of 100 devices: %s %+v", r.Outcome, r.Error)
	}
}

func TestAlreadyPending(t *testing.T) {
	t.Parallel()
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("duplicateReturnsExisting=%v", existing), func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, sim: mdesim.Options{DuplicateReturnsExisting: existing}})
			c := e.collect("mde.offboard.result.>")
			m := e.tenants["contoso"].machines[0]
			first := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "a-1", "machineId": m.ID})
			second := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "a-2", "machineId": m.ID})
			if first.Outcome != offboard.OutcomeCreated || second.Outcome != offboard.OutcomeAlreadyPending {
				t.Fatalf("outcomes %q, %q; want created, already_pending", first.Outcome, second.Outcome)
			}
			var a1, a2 struct{ ID string }
			_ = json.Unmarshal(first.MachineAction, &a1)
			_ = json.Unmarshal(second.MachineAction, &a2)
			if a1.ID == "" || a1.ID != a2.ID {
				t.Errorf("actions %q and %q, want the same one", a1.ID, a2.ID)
			}
			if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
				t.Errorf("%d actions, want 1", n)
			}
		})
	}
}

// TestFindsOwnActionAfterCrash: a worker that died after sending the call
// but before storing the result left a "calling" entry in the ledger. The
// redelivered request must find the action and create no other.
func TestFindsOwnActionAfterCrash(t *testing.T) {
	t.Parallel()
	findsOwnActionAfterCrash(t, -3*time.Second, "")
}

// TestFindsOwnActionOfAWriterAhead: the same, the dead worker's clock ten
// minutes ahead when it wrote its entry (a step not measured yet). The
// action is looked for from when the server stored the entry too: from
// the entry's time alone, the action was older than the look went back,
// and a second call made a second action.
func TestFindsOwnActionOfAWriterAhead(t *testing.T) {
	t.Parallel()
	findsOwnActionAfterCrash(t, 10*time.Minute, "a-process-that-died")
}

// putForNextRequest writes entry, as a worker that took the request up
// before would have, for the request id of contoso's next request: its
// Seq is the place in the stream that request will take.
func (e *env) putForNextRequest(t *testing.T, requestID string, entry *queue.Entry) {
	t.Helper()
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	entry.Seq = info.State.LastSeq + 1
	if err := ledger.Put(t.Context(), "contoso", requestID, nil, entry); err != nil {
		t.Fatal(err)
	}
}

// findsOwnActionAfterCrash runs TestFindsOwnActionAfterCrash with the dead
// worker's entry dated started from now and naming writer ("": an entry
// of a release before entries named their process).
func findsOwnActionAfterCrash(t *testing.T, started time.Duration, writer string) {
	t.Helper()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, ackWait: 2 * time.Second})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	// The call the dead worker sent, with the comment it would send.
	action := e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: "crash-1", Tenant: "contoso", MachineID: m.ID})
	e.sim.SetActionStatus(tt.tenantID, action.ID, "Succeeded") // the device came online meanwhile
	// The dead worker's entry names the request's own place in the stream:
	// it is the same message, delivered again.
	e.putForNextRequest(t, "crash-1", &queue.Entry{State: queue.StateCalling, MachineID: m.ID, Started: time.Now().Add(started), Writer: writer})
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "crash-1", "machineId": m.ID})
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if r.Outcome != offboard.OutcomeCreated || got.ID != action.ID {
		t.Errorf("result %s with action %s, want created with action %s", r.Outcome, got.ID, action.ID)
	}
	if n := e.offboardCalls(tt.tenantID, m.ID); n != 1 {
		t.Errorf("%d offboard calls, want only the one before the crash", n)
	}
}

// TestLostAnswerMakesNoSecondAction: the offboard call creates the action
// but its answer is lost (504), and the device comes online at once, so a
// second call would create a second action. The worker must find the first.
func TestLostAnswerMakesNoSecondAction(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, sim: mdesim.Options{ActionCompleteAfter: time.Millisecond}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "lost-1", "machineId": tt.machines[0].ID})
	actions := e.sim.Actions(tt.tenantID)
	if len(actions) != 1 {
		t.Fatalf("%d actions after a lost answer, want 1", len(actions))
	}
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if r.Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		t.Errorf("result %+v, want created with the action of the lost answer", r)
	}

	// The same on the last attempt: five 503s, then the answer is lost.
	m := mdesim.Machine{ID: newID(), ComputerDNSName: "late.contoso.local", OSPlatform: "Windows11"}
	e.sim.AddMachine(tt.tenantID, m)
	e.sim.InjectStatus(tt.tenantID, "offboard", http.StatusServiceUnavailable, "ServiceUnavailable", "busy", 5, 0)
	e.sim.LoseAnswers(tt.tenantID, 1)
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "lost-2", "machineId": m.ID})
	if r.Outcome != offboard.OutcomeCreated || r.Attempts != 6 {
		t.Errorf("lost answer on the last attempt: %+v, want created after 6 attempts", r)
	}
}

// TestLostAnswerWhileActionsLag: the answer is lost and the new action
// stays out of lists for a moment, so the look for it finds nothing and the
// call is sent again; the API refuses it (ActiveRequestAlreadyExists) and
// the worker must wait for the action to show rather than fail.
func TestLostAnswerWhileActionsLag(t *testing.T) {
	t.Parallel()
	// The lag is shorter than the worker's looks after the refusal take
	// at the least (the test's backoff: 10, 20 and 40 ms at the least,
	// after jitter), else the last look could come before the action
	// shows; it is longer than the look right after the lost answer.
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, sim: mdesim.Options{ActionVisibleAfter: 50 * time.Millisecond}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "lag-1", "machineId": tt.machines[0].ID})
	actions := e.sim.Actions(tt.tenantID)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if len(actions) != 1 || got.ID != actions[0].ID || (r.Outcome != offboard.OutcomeCreated && r.Outcome != offboard.OutcomeAlreadyPending) {
		t.Errorf("result %+v (%+v) with %d actions, want the one action", r, r.Error, len(actions))
	}
}

// TestOffboardAnswered200: the documentation says 200, the service has
// been seen answering 201; both are success.
func TestOffboardAnswered200(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, sim: mdesim.Options{OffboardStatus: http.StatusOK}})
	c := e.collect("mde.offboard.result.>")
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "ok-1", "machineId": e.tenants["contoso"].machines[0].ID})
	if r.Outcome != offboard.OutcomeCreated || len(r.MachineAction) == 0 {
		t.Errorf("200 answer: %+v, want created with the action", r)
	}
}

func TestRetriesAndFinalAnswers(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 6, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	for i, tc := range []struct {
		status       int
		code         string
		n            int
		wantOutcome  string
		wantCode     string
		wantAttempts int
	}{
		{http.StatusInternalServerError, "InternalServerError", 2, offboard.OutcomeCreated, "", 3},
		{http.StatusNotFound, "ResourceNotFound", 2, offboard.OutcomeCreated, "", 3}, // exists after all
		{http.StatusNotFound, "ResourceNotFound", 4, offboard.OutcomeFailed, offboard.CodeMachineNotFound, 4},
		{http.StatusForbidden, "Forbidden", 1, offboard.OutcomeFailed, offboard.CodeForbidden, 1},
		{http.StatusBadRequest, "InvalidRequestBody", 1, offboard.OutcomeFailed, offboard.CodeAPIRejected, 1},
		{http.StatusServiceUnavailable, "ServiceUnavailable", 6, offboard.OutcomeFailed, offboard.CodeAPIError, 6},
	} {
		e.sim.InjectStatus(tt.tenantID, "offboard", tc.status, tc.code, "injected", tc.n, 0)
		id := fmt.Sprintf("r-%d", i)
		r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": tt.machines[i].ID})
		if r.Outcome != tc.wantOutcome || r.Attempts != tc.wantAttempts || (tc.wantCode != "" && (r.Error == nil || r.Error.Code != tc.wantCode)) {
			t.Errorf("%d %s ×%d: outcome %q attempts %d error %+v; want %q, %d attempts, code %q",
				tc.status, tc.code, tc.n, r.Outcome, r.Attempts, r.Error, tc.wantOutcome, tc.wantAttempts, tc.wantCode)
		}
		if r.Error != nil && tc.wantCode == offboard.CodeForbidden && (r.Error.HTTPStatus != 403 || r.Error.APICode != "Forbidden") {
			t.Errorf("forbidden: error %+v lacks the API's status and code", r.Error)
		}
		e.sim.InjectStatus(tt.tenantID, "offboard", 0, "", "", 0, 0) // clear what is left
	}
}

// TestRestartLosesNothing stops the worker in the middle of a backlog and
// starts a new one on the same storage: every request still gets exactly
// one result and every device one action.
func TestRestartLosesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 40, tenants: []string{"contoso"},
		sim:    mdesim.Options{Limits: map[string][]mdesim.Window{"offboard": {{Count: 5, Length: 200 * time.Millisecond}}}},
		limits: `["5/200ms"]`,
	})
	tt := e.tenants["contoso"]
	for i, m := range tt.machines {
		id := fmt.Sprintf("r-%02d", i)
		e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": m.ID}, id)
	}
	eventually(t, 10*time.Second, "some results", func() bool {
		return metricValue(t, e, "mde_offboard_results_total", nil) >= 10
	})
	e.stop()
	stoppedAfter := len(e.sim.Actions(tt.tenantID))
	e.start()
	c := e.collect("mde.offboard.result.>")
	got := c.wait(t, 40, 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	for key, rs := range c.wait(t, 40, time.Second) {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: %d results, first %+v", key, len(rs), rs[0])
		}
	}
	if len(got) != 40 {
		t.Errorf("%d results, want 40", len(got))
	}
	e.oneActionEach("contoso", 40)
	t.Logf("stopped after %d of 40 actions, restarted, finished", stoppedAfter)
}

// TestSecretsStayOut runs a tenant whose secret is wrong and one whose
// secret is right, then looks for either secret and any token in logs,
// results, dead letters, metrics and health answers.
func TestSecretsStayOut(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	e := setup(t, envConfig{machines: 1, logger: zap.New(core)})
	c := e.collect("mde.offboard.>")
	bad := e.tenants["fabrikam"]
	e.sim.SetSecret(bad.tenantID, "rotated-"+newID()) // fabrikam's file now holds a stale secret
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "s-1", "machineId": e.tenants["contoso"].machines[0].ID}, "s-1")
	e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "s-2", "machineId": bad.machines[0].ID}, "s-2")
	got := c.wait(t, 2, 20*time.Second)
	if r := got["fabrikam/s-2"]; len(r) != 1 || r[0].Error == nil || r[0].Error.Code != offboard.CodeUnauthorized {
		t.Fatalf("stale secret: %+v, want unauthorized", r)
	}
	var everything strings.Builder
	for _, entry := range logs.All() {
		everything.WriteString(entry.Message)
		for k, v := range entry.ContextMap() {
			fmt.Fprintf(&everything, " %s=%v", k, v)
		}
		everything.WriteString("\n")
	}
	for _, rs := range got {
		for _, r := range rs {
			b, _ := json.Marshal(r)
			everything.Write(b)
		}
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		resp, err := http.Get("http://" + e.app.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s answered %d: %s", path, resp.StatusCode, b)
		}
		everything.Write(b)
	}
	text := everything.String()
	for name, tt := range e.tenants {
		if strings.Contains(text, tt.secret) {
			t.Errorf("%s's client secret appears in logs, results or endpoints", name)
		}
	}
	for _, bearer := range []string{"Bearer ", "access_token"} {
		if strings.Contains(text, bearer) {
			t.Errorf("%q appears in logs, results or endpoints", bearer)
		}
	}
}

func TestReadyAndStop(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	if err := e.app.Ready(t.Context()); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.app.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.app.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := http.Get("http://" + e.app.HTTPAddr() + "/healthz"); err == nil {
		t.Error("HTTP server still answers after Stop")
	}
}

// TestNotReadyWhileStopping: once Stop is called the worker takes no
// request, so /readyz answers 503 while the requests under way finish
// (before, it answered 200 until the HTTP server closed).
func TestNotReadyWhileStopping(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, sim: mdesim.Options{Latency: 2 * time.Second}})
	c := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "slow-1", "machineId": m.ID}, "slow-1")
	eventually(t, 10*time.Second, "the request under way", func() bool {
		return len(e.sim.Calls()) > 0
	})
	stopped := make(chan error, 1)
	go func() { stopped <- e.app.Stop(context.Background()) }()
	eventually(t, time.Second, "Ready to say it stops", func() bool { return e.app.Ready(t.Context()) != nil })
	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatalf("/readyz while the request under way finishes: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "stopping") {
		t.Errorf("/readyz while stopping answered %d %q, want 503 stopping", resp.StatusCode, b)
	}
	if err := testwait.For(t, stopped, time.Minute, "Stop to return"); err != nil {
		t.Fatal(err)
	}
	if rs := c.wait(t, 1, 10*time.Second)["contoso/slow-1"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results %+v, want one created", rs)
	}
}

// TestBadCopyCannotClobber: a malformed message that reuses a valid
// request's id gets its own answer and leaves the valid request's result
// and ledger entry alone; a publisher's Nats-Expected-Stream header does
// not stop its dead letter from being stored.
func TestBadCopyCannotClobber(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "x-1", "machineId": m.ID}, "x-1")
	bad := nats.NewMsg("mde.offboard.request.contoso")
	bad.Data = []byte(`{"requestId": "x-1", "machineId": "not-a-device"}`)
	bad.Header.Set(jetstream.ExpectedStreamHeader, offboard.StreamRequests)
	if _, err := e.js.PublishMsg(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two results for x-1", func() bool { return len(c.snapshot()["contoso/x-1"]) == 2 })
	var outcomes []string
	for _, r := range c.wait(t, 1, time.Second)["contoso/x-1"] {
		outcomes = append(outcomes, r.Outcome)
	}
	if !slices.Contains(outcomes, offboard.OutcomeCreated) || !slices.Contains(outcomes, offboard.OutcomeFailed) {
		t.Errorf("outcomes %v, want one created and one failed", outcomes)
	}
	l, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := l.Get(t.Context(), "contoso", "x-1")
	if err != nil || entry == nil || !strings.Contains(string(entry.Result), `"outcome":"created"`) {
		t.Errorf("ledger entry of x-1: %+v, %v; want the created result", entry, err)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	cons, err := e.js.OrderedConsumer(t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if dead.Headers().Get(offboard.HeaderOriginalPrefix+jetstream.ExpectedStreamHeader) != offboard.StreamRequests {
		t.Errorf("dead letter headers %v: the original Nats-Expected-Stream is not kept", dead.Headers())
	}
}

// TestRemovedTenantIsAnsweredNotDropped: a tenant with requests waiting is
// removed from the configuration. After the restart its requests are each
// answered unknown_tenant once, and none is dropped unanswered.
func TestRemovedTenantIsAnsweredNotDropped(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 5, tweak: func(f *config.File) {
		// fabrikam may make one call an hour: four requests stay waiting.
		f.Tenants[1].Resolved.Windows["offboard"] = []limiter.Window{{Count: 1, Length: time.Hour}}
	}})
	for i, m := range e.tenants["fabrikam"].machines {
		id := fmt.Sprintf("f-%d", i)
		e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": id, "machineId": m.ID}, id)
	}
	eventually(t, 10*time.Second, "one fabrikam result", func() bool {
		return metricValue(t, e, "mde_offboard_results_total", map[string]string{"tenant": "fabrikam"}) == 1
	})
	e.stop()
	e.opts.Tenants.Tenants = e.opts.Tenants.Tenants[:1] // contoso only
	// The restarted embedded server lost fabrikam's consumers (their state
	// is in memory): its requests get them back once they have waited
	// OrphanAge (a minute by default) without one.
	e.opts.Queue.OrphanAge = 200 * time.Millisecond
	e.start()
	c := e.collect("mde.offboard.result.fabrikam")
	got := c.wait(t, 5, 20*time.Second)
	unknown := 0
	for key, rs := range got {
		if len(rs) != 1 {
			t.Errorf("%s: %d results", key, len(rs))
		}
		if rs[0].Error != nil && rs[0].Error.Code == offboard.CodeUnknownTenant {
			unknown++
		}
	}
	if unknown != 4 {
		t.Errorf("%d requests answered unknown_tenant, want the 4 that were waiting", unknown)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if n := len(e.sim.Actions(e.tenants["fabrikam"].tenantID)); n != 1 {
		t.Errorf("fabrikam has %d actions, want the 1 made before the removal", n)
	}
}

// TestAttemptOutOfRangeSaysSo: an attempt that is a whole number too
// large, a fraction, or a whole number written with an exponent is
// answered invalid_request with what is wrong, and calls no API.
func TestAttemptOutOfRangeSaysSo(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1})
	c := e.collect("mde.offboard.result.>")
	for i, tc := range []struct{ attempt, want string }{
		{"1e20", "field attempt 1e20 is out of range: it must be from 1 to 9223372036854775807"},
		{"2.5", "field attempt must be a whole number, not 2.5"},
		{"1e3", "field attempt 1e3 is a whole number written with a fraction or an exponent"},
	} {
		id := fmt.Sprintf("attempt-%d", i)
		r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": e.tenants["contoso"].machines[0].ID, "attempt": json.Number(tc.attempt)})
		if r.Error == nil || r.Error.Code != offboard.CodeInvalidRequest || !strings.Contains(r.Error.Message, tc.want) {
			t.Errorf("attempt %s: %+v, want invalid_request saying %q", tc.attempt, r.Error, tc.want)
		}
	}
	if n := len(e.sim.Calls()); n != 0 {
		t.Errorf("%d API calls, want none", n)
	}
}
