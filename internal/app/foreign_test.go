package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDuplicateRefusedUnderAnotherCode: the API refuses a duplicate
// offboard with HTTP 400 and the message "Action is already in progress"
// under a code other than ActiveRequestAlreadyExists (the documentation
// gives the message and no code: MicrosoftDocs/microsoft-365-docs PR
// 5993; MDE-API.md: where sources disagree, build for both). The request
// is already_pending with the device's pending action, as for the code
// seen in the wild. Observed: failed api_rejected.
func TestDuplicateRefusedUnderAnotherCode(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"BadRequest", "activeRequestAlreadyExists"} {
		t.Run("code="+code, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
			c := e.collect("mde.offboard.result.>")
			tt := e.tenants["contoso"]
			m := tt.machines[0]
			first := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "dup-1", "machineId": m.ID})
			if first.Outcome != offboard.OutcomeCreated {
				t.Fatalf("first: %s %+v, want created", first.Outcome, first.Error)
			}
			msg := "Action is already in progress."
			if code == "activeRequestAlreadyExists" {
				msg = "Duplicate."
			}
			e.sim.InjectStatus(tt.tenantID, mdesim.APIOffboard, http.StatusBadRequest, code, msg, 1, 0)
			second := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "dup-2", "machineId": m.ID})
			actions := e.sim.Actions(tt.tenantID)
			if len(actions) != 1 {
				t.Fatalf("%d actions, want 1", len(actions))
			}
			if second.Outcome != offboard.OutcomeAlreadyPending || !strings.Contains(string(second.MachineAction), actions[0].ID) {
				t.Errorf("second: %s %+v, want already_pending with %s", second.Outcome, second.Error, actions[0].ID)
			}
		})
	}
}

// TestInProgressRefusalNotBorneOutIsRejected: a 400 recognised as a
// duplicate by its message alone ("already in progress" under another
// code: another kind of action in progress, or a refusal quoting the
// comment), while the device has no pending Offboard action, is the
// refusal it is: failed api_rejected with the API's words, as any other
// 4xx. Observed: failed api_error, "the API reports an offboard already
// pending", which the API never said.
func TestInProgressRefusalNotBorneOutIsRejected(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	const msg = "A live response session is already in progress on the device."
	e.sim.InjectStatus(tt.tenantID, mdesim.APIOffboard, http.StatusBadRequest, "BadRequest", msg, 1, 0)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "busy-1", "machineId": tt.machines[0].ID})
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIRejected ||
		r.Error.APICode != "BadRequest" || r.Error.HTTPStatus != http.StatusBadRequest || !strings.Contains(r.Error.Message, msg) {
		t.Errorf("result %s %+v, want failed %s with the API's message", r.Outcome, r.Error, offboard.CodeAPIRejected)
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}

// actionOf reads the machineId and type of a result's Machine Action.
func actionOf(t *testing.T, r offboard.Result) (machineID, typ string) {
	t.Helper()
	var a struct {
		MachineID *string `json:"machineId"`
		Type      string  `json:"type"`
	}
	if err := json.Unmarshal(r.MachineAction, &a); err != nil {
		t.Fatalf("result's action %s: %v", r.MachineAction, err)
	}
	if a.MachineID != nil {
		machineID = *a.MachineID
	}
	return machineID, a.Type
}

// TestOffboardAnsweredWithAnotherAction: the API accepts an offboard (201)
// and answers with a Machine Action of another device or of another type
// (a gateway's cache, a fault of the service). That is not the call's
// action: the worker looks for its own, as for an answer that is no
// Machine Action, and the result carries the device's Offboard action.
// Observed: created with the other device's (or type's) action, which the
// ledger keeps and the tracker follows.
func TestOffboardAnsweredWithAnotherAction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, from, to string }{
		{"another device", "machineId", ""},
		{"another type", `"type":"Offboard"`, `"type":"Isolate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}, noStart: true})
			tt := e.tenants["contoso"]
			a, b := tt.machines[0], tt.machines[1]
			withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
				if !isOffboard(req) || status/100 != 2 {
					return body
				}
				if tc.from == "machineId" {
					return []byte(strings.ReplaceAll(string(body), a.ID, b.ID))
				}
				return []byte(strings.Replace(string(body), tc.from, tc.to, 1))
			})
			e.start()
			c := e.collect("mde.offboard.result.>")
			r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "other-1", "machineId": a.ID})
			if r.Outcome != offboard.OutcomeCreated {
				t.Fatalf("result %s %+v, want created (the call made the device's action)", r.Outcome, r.Error)
			}
			if id, typ := actionOf(t, r); !strings.EqualFold(id, a.ID) || typ != "Offboard" {
				t.Errorf("created with an action of device %q, type %q; want the device's own Offboard action (%s)", id, typ, a.ID)
			}
		})
	}
}

// dropMachineClause is an HTTP transport that takes the machineId clause
// out of the actions list's $filter: the API answering with the tenant's
// Offboard actions of every device, as a list that ignored part of its
// filter would.
type dropMachineClause struct{ next http.RoundTripper }

func (d dropMachineClause) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/api/machineactions") {
		r := req.Clone(req.Context())
		u := *req.URL
		u.RawQuery = "%24filter=type%20eq%20%27Offboard%27"
		r.URL = &u
		req = r
	}
	return d.next.RoundTrip(req)
}

// TestActionsListWithOtherDevices: the device's Offboard actions are
// listed with those of other devices (a list that ignored part of its
// filter). Another device's pending action with the same comment (a
// campaign's) is neither this request's action nor a pending offboard of
// this device: the request is not answered already_pending with it.
func TestActionsListWithOtherDevices(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}, noStart: true})
	hc := *e.opts.HTTPClient
	hc.Transport = dropMachineClause{next: hc.Transport}
	e.opts.HTTPClient = &hc
	// A refusal under ActiveRequestAlreadyExists is looked for until an
	// action could show in lists: a second here, not a minute.
	e.opts.ActionShowsWithin = time.Second
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	a, b := tt.machines[0], tt.machines[1]
	const comment = "Retired by campaign"
	first := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "b-1", "machineId": b.ID, "comment": comment})
	if first.Outcome != offboard.OutcomeCreated {
		t.Fatalf("device b: %s %+v, want created", first.Outcome, first.Error)
	}
	// Device a: the API says an offboard is already pending.
	e.sim.InjectStatus(tt.tenantID, mdesim.APIOffboard, http.StatusBadRequest, "ActiveRequestAlreadyExists", "Action is already in progress.", 1, 0)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "a-1", "machineId": a.ID, "comment": comment})
	if r.MachineAction != nil {
		id, _ := actionOf(t, r)
		t.Fatalf("device a answered %s with device %s's action (device b is %s)", r.Outcome, id, b.ID)
	}
	// No Offboard action of device a is listed: the API's refusal is not
	// borne out.
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError {
		t.Errorf("device a: %s %+v, want failed %s", r.Outcome, r.Error, offboard.CodeAPIError)
	}
}
