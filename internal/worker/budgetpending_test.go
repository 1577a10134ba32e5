package worker

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// commentlessLists is a transport that answers the device's action lists
// with every action's requestorComment null, as the API may answer any
// member of a Machine Action (MDE-API.md).
type commentlessLists struct{ next http.RoundTripper }

func (c commentlessLists) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/machineactions") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var list struct {
		Value []map[string]any `json:"value"`
	}
	if json.Unmarshal(body, &list) == nil {
		for _, a := range list.Value {
			a["requestorComment"] = nil
		}
		body, _ = json.Marshal(list)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// TestDuplicateAfterALostAnswerKeepsItsSlot: with a budget of 1/24h, the
// first request's offboard call creates its action but its answer is
// lost; the call made again is refused as a duplicate, and the device's
// lists show the pending action without its comment, so the request is
// answered already_pending. That action may be the lost call's own (here
// it is): its slot counts, and a second request, for another device,
// waits for the budget. Before, the slot was given back and the second
// device was offboarded too: two actions under a budget of one.
func TestDuplicateAfterALostAnswerKeepsItsSlot(t *testing.T) {
	t.Parallel()
	e := setupLoopTransport(t, `["100/1m"]`, "    guards:\n      budget: \"1/24h\"\n", RetryPolicy{}, nil,
		func(next http.RoundTripper) http.RoundTripper { return commentlessLists{next: next} })
	const other = "2e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: other, ComputerDNSName: "pc-2.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
	e.sim.LoseAnswers(loopTenantID, 1)
	e.publish(t, "r-1")
	r, _ := e.untilResult(t, nil)
	if r.RequestID != "r-1" || r.Outcome != offboard.OutcomeAlreadyPending {
		t.Fatalf("result %s %s %+v, want r-1 already_pending", r.RequestID, r.Outcome, r.Error)
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 1 {
		t.Fatalf("%d actions after r-1, want 1", n)
	}
	e.publishFor(t, "r-2", other)
	e.budgetStaysSpent(t, "%d actions with a budget of 1/24h: the slot of the call whose answer was lost was given back")
}

// budgetStaysSpent watches for 3 s, the budget spent by the one action
// the simulator holds, that no other action is created and no result
// comes; tooMany says what a second action means, with %d for the count.
func (e *loopEnv) budgetStaysSpent(t *testing.T, tooMany string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(e.sim.Actions(loopTenantID)); n != 1 {
			t.Fatalf(tooMany, n)
		}
		select {
		case r := <-e.results:
			t.Fatalf("result %s %s while the budget is spent", r.RequestID, r.Outcome)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
