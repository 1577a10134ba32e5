package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/worker"
)

// fastTracking is a tenant's tracking that looks at an action after
// 100 ms, then every 200 ms at most.
const fastTracking = `    tracking:
      enabled: true
      firstCheck: 100ms
      maxInterval: 200ms
`

// TestTrackingEndedStaysEnded: a request answered again from the ledger
// once its action's tracking has ended (a publisher re-sending it days
// later) starts no second tracking: no Pending event after the final
// one, no second final event, no more looks.
func TestTrackingEndedStaysEnded(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim:   mdesim.Options{ActionCompleteAfter: 300 * time.Millisecond},
		extra: fastTracking,
	})
	// The results stream forgets message ids after a second, as it does
	// after its duplicate window (24 h by default).
	e.opts.Queue.Duplicates = time.Second
	e.start()
	events := e.actionEvents()
	results := e.collect("mde.offboard.result.contoso")
	req := map[string]any{"requestId": "r-1", "machineId": e.tenants["contoso"].machines[0].ID}
	e.publish("mde.offboard.request.contoso", req, "contoso:r-1")
	allSucceeded(t, events, 1)
	time.Sleep(1500 * time.Millisecond) // past the duplicate window
	looks := e.actionLooks()
	e.publish("mde.offboard.request.contoso", req, "contoso:r-1:again")
	eventually(t, 10*time.Second, "the request answered again", func() bool {
		return len(results.snapshot()["contoso/r-1"]) == 2
	})
	time.Sleep(time.Second) // a tracking started again would look, and publish
	for id, evs := range events() {
		var statuses []string
		for _, ev := range evs {
			statuses = append(statuses, fmt.Sprintf("%s(final=%v)", ev.Status, ev.Final))
		}
		if len(evs) != 2 {
			t.Errorf("action %s: events %v, want Pending then Succeeded", id, statuses)
		}
	}
	if n := e.actionLooks(); n != looks {
		t.Errorf("%d looks at the action after its tracking ended", n-looks)
	}
	if n := e.followed("contoso"); n != 0 {
		t.Errorf("%d actions followed after the answer from the ledger", n)
	}
}

// followed counts the tenant's actions the ledger says are followed (an
// ended tracking leaves a mark without an action id).
func (e *env) followed(tenant string) int {
	e.t.Helper()
	l, err := queue.NewLedger(e.t.Context(), e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	states, err := l.Tracked(e.t.Context(), tenant)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, data := range states {
		var st struct {
			ActionID string `json:"actionId"`
		}
		if json.Unmarshal(data, &st) == nil && st.ActionID != "" {
			n++
		}
	}
	return n
}

// actionLooks counts the GETs of one Machine Action the simulator answered.
func (e *env) actionLooks() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.API == "machineactions" && c.Method == "GET" && c.ActionID != "" {
			n++
		}
	}
	return n
}

// TestTrackingTakesNoAnswerOfAnotherAction: a look at an action that the
// API answers with another action (another device's, already Succeeded)
// is an unreadable answer: logged and looked at again, never published as
// the followed action's status nor ending its tracking. The action's own
// status is published once the API answers it.
func TestTrackingTakesNoAnswerOfAnotherAction(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	// Quota for a look every 200 ms: the looks are stretched to what
	// the machineactions quota leaves tracking, the unreadable ones too.
	e := setup(t, envConfig{
		machines: 2, tenants: []string{"contoso"}, logger: zap.New(core),
		sim:   mdesim.Options{Limits: map[string][]mdesim.Window{"machineactions": {{Count: 600, Length: time.Minute}}}},
		extra: "      machineactions: [\"600/1m\"]\n" + fastTracking,
	})
	tt := e.tenants["contoso"]
	events := e.actionEvents()
	e.offboardEach("contoso", "t-", 1, 2)
	eventually(t, 10*time.Second, "the first action followed", func() bool { return len(events()) == 1 })
	done := e.sim.Actions(tt.tenantID)[0].ID
	e.sim.SetActionStatus(tt.tenantID, done, mdesim.StatusSucceeded)
	allSucceeded(t, events, 1)
	const mixed = 3
	e.sim.AnswerOtherAction(tt.tenantID, mixed)
	e.offboardEach("contoso", "t-", 0, 1)
	eventually(t, 10*time.Second, "the second action followed", func() bool { return len(events()) == 2 })
	var followed string
	for _, a := range e.sim.Actions(tt.tenantID) {
		if a.ID != done {
			followed = a.ID
		}
	}
	looks := func() int {
		n := 0
		for _, c := range e.sim.Calls() {
			if c.API == "machineactions" && c.Method == "GET" && c.ActionID == followed {
				n++
			}
		}
		return n
	}
	eventually(t, 10*time.Second, "the answers of the other action taken, and one of its own", func() bool {
		evs := events()[followed]
		return looks() > mixed || evs[len(evs)-1].Final
	})
	if evs := events()[followed]; len(evs) != 1 || evs[0].Status != mdesim.StatusPending {
		t.Fatalf("events of %s while the API answered another action: %s; want its first, Pending, alone", followed, shown(evs))
	}
	e.sim.SetActionStatus(tt.tenantID, followed, mdesim.StatusFailed)
	eventually(t, 10*time.Second, "the action's own status published", func() bool {
		evs := events()[followed]
		return evs[len(evs)-1].Final
	})
	for id, evs := range events() {
		for _, ev := range evs {
			a, err := mde.ParseAction(ev.MachineAction)
			if err != nil || a.ID != id || !strings.EqualFold(a.MachineID, ev.MachineID) {
				t.Errorf("event of %s (%s) carries action %s of %s: %v", id, ev.MachineID, a.ID, a.MachineID, err)
			}
		}
	}
	if evs := events()[followed]; len(evs) != 2 || evs[1].Status != mdesim.StatusFailed {
		t.Errorf("events of %s: %s; want Pending, then Failed", followed, shown(evs))
	}
	if n := logs.FilterMessage("look at a tracked action: an unreadable answer").Len(); n < mixed {
		t.Errorf("%d looks logged as failed, want at least %d", n, mixed)
	}
}

// shown is events as their statuses and the action each carries.
func shown(evs []worker.ActionEvent) string {
	var out []string
	for _, ev := range evs {
		a, _ := mde.ParseAction(ev.MachineAction)
		out = append(out, fmt.Sprintf("%s(final=%v, action %s of %s)", ev.Status, ev.Final, a.ID, a.MachineID))
	}
	return strings.Join(out, ", ")
}

// TestTrackingOutlivesRefusedCredentials: while the login host refuses
// the tenant's credentials (a client secret expired or revoked), a look
// at a followed action gets no token: that says nothing about the
// action, which stays followed and is published Succeeded once the
// credentials work again. Taken as an unreadable answer, the refusal
// ended the tracking of every followed action with a final event.
func TestTrackingOutlivesRefusedCredentials(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 1, tenants: []string{"contoso"},
		extra: fastTracking,
	})
	tt := e.tenants["contoso"]
	events := e.actionEvents()
	e.offboardEach("contoso", "t-", 0, 1)
	eventually(t, 10*time.Second, "the action followed", func() bool { return len(events()) == 1 })
	// The secret rotated away from the worker's, its tokens revoked: the
	// API refuses the token held, and the login host the secret.
	logins := e.sim.TokenRequests(tt.tenantID)
	rotated := "s3cr3t-rotated-" + newID()
	e.sim.SetSecret(tt.tenantID, rotated)
	e.sim.RevokeTokens(tt.tenantID)
	action := e.sim.Actions(tt.tenantID)[0].ID
	// 30 s bounds a hang, not the pace. The looks that follow within
	// the refusal's hold get it without asking the login host.
	eventually(t, 30*time.Second, "the login host refusing the secret", func() bool {
		evs := events()[action]
		return e.sim.TokenRequests(tt.tenantID) >= logins+1 || evs[len(evs)-1].Final
	})
	// The worker is given the rotated secret: the refusal's hold ends.
	path := filepath.Join(e.dir, "contoso.secret")
	if err := os.WriteFile(path, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(path, later, later)
	e.sim.SetActionStatus(tt.tenantID, action, mdesim.StatusSucceeded)
	eventually(t, 30*time.Second, "a final event", func() bool {
		evs := events()[action]
		return len(evs) > 0 && evs[len(evs)-1].Final
	})
	if evs := events()[action]; len(evs) != 2 || evs[1].Status != mdesim.StatusSucceeded {
		t.Errorf("events of %s: %s; want Pending, then Succeeded", action, shown(evs))
	}
}
