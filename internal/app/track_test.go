package app

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestTrackingEndedStaysEnded: a request answered again from the ledger
// once its action's tracking has ended (a publisher re-sending it days
// later) starts no second tracking: no Pending event after the final
// one, no second final event, no more looks.
func TestTrackingEndedStaysEnded(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim: mdesim.Options{ActionCompleteAfter: 300 * time.Millisecond},
		extra: `    tracking:
      enabled: true
      firstCheck: 100ms
      maxInterval: 200ms
`,
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
