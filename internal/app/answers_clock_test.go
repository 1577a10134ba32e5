package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// dateRT sets every API answer's Date header to the real clock plus skew:
// the Date of a front end or proxy whose clock is off from the one that
// stamps the actions' creationDateTimeUtc.
type dateRT struct {
	next http.RoundTripper
	skew time.Duration
}

func (r dateRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/api/") {
		return resp, err
	}
	resp.Header.Set("Date", time.Now().Add(r.skew).UTC().Format(http.TimeFormat))
	return resp, nil
}

// TestDateAheadKeepsOwnActionCreated: an offboard answered
// 201 with the action it created, but the answer's Date runs 2 minutes
// ahead of the clock that stamped creationDateTimeUtc. The action is the
// call's own: created, counted in the budget (CONTRACT.md Budget). A Date
// far from our clock is not trusted over the action's time, else the
// action would look created before the call reached the API
// (already_pending, its budget slot given back, a second device let
// through a 1/1h budget).
func TestDateAheadKeepsOwnActionCreated(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}, noStart: true,
		extra: "    guards:\n      budget: \"1/1h\"\n"})
	hc := *e.opts.HTTPClient
	hc.Transport = dateRT{next: hc.Transport, skew: 2 * time.Minute}
	e.opts.HTTPClient = &hc
	e.start()
	createdThenHeldByBudget(t, e, "skew", "the call's own fresh action, Date 2m ahead")
}

// TestOldActionWithoutCreationTimeIsNotOwn: MDE-API.md "all may
// be null or missing". A device had an offboard with the CMDB change's
// comment that an admin cancelled; the change is sent again as a new
// request with the same comment. Its call meets a 500 (no action made), so
// the worker looks for its own action before trying again. With or
// without creationDateTimeUtc in the lists, the old, cancelled action is
// not taken for the call's own (its last update is older than the call):
// the call is sent again and makes a new action.
func TestOldActionWithoutCreationTimeIsNotOwn(t *testing.T) {
	t.Parallel()
	for _, nullCreation := range []bool{false, true} {
		t.Run(fmt.Sprintf("nullCreation=%v", nullCreation), func(t *testing.T) {
			t.Parallel()
			oldActionTakenAsOwn(t, nullCreation)
		})
	}
}

func oldActionTakenAsOwn(t *testing.T, nullCreation bool) {
	// The old action was made 10 minutes ago: well before the 5 minutes
	// of clock skew mayBeOwnAction allows, so with its creation time it is
	// never taken for the call's own.
	apiClock := clockwork.NewFakeClockAt(time.Now().Add(-10 * time.Minute))
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true, sim: mdesim.Options{Clock: apiClock}})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if nullCreation && strings.HasSuffix(req.URL.Path, "/machineactions") && status == 200 {
			return nullField(body, "creationDateTimeUtc")
		}
		return body
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	const comment = "Retired in CMDB (CHG0012345)"
	m := tt.machines[0]
	first := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "old-1", "machineId": m.ID, "comment": comment})
	if first.Outcome != offboard.OutcomeCreated {
		t.Fatalf("first: %s %+v", first.Outcome, first.Error)
	}
	old := e.sim.Actions(tt.tenantID)[0]
	if !e.sim.SetActionStatus(tt.tenantID, old.ID, "Cancelled") {
		t.Fatal("cancel the old action")
	}
	e.sim.InjectStatus(tt.tenantID, "offboard", http.StatusInternalServerError, "", "", 1, 0)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "old-2", "machineId": m.ID, "comment": comment})
	pending := 0
	for _, a := range e.sim.Actions(tt.tenantID) {
		if a.Status == "Pending" || a.Status == "InProgress" {
			pending++
		}
	}
	if pending != 1 {
		t.Errorf("second request answered %s (%d calls) with %s; %d unfinished offboard actions, want 1: the device was never offboarded",
			r.Outcome, r.Attempts, r.MachineAction, pending)
	}
}
