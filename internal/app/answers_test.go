package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// rewriteRT rewrites the API's answers before the worker reads them, to
// give the answers MDE-API.md says the real service can give but the
// simulator cannot.
type rewriteRT struct {
	next    http.RoundTripper
	rewrite func(req *http.Request, status int, body []byte) []byte
}

func (r rewriteRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/api/") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	body = r.rewrite(req, resp.StatusCode, body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// nullField sets field to null in a Machine Action, or in every action of
// a list answer.
func nullField(body []byte, field string) []byte {
	var one map[string]any
	if json.Unmarshal(body, &one) != nil {
		return body
	}
	if list, ok := one["value"].([]any); ok {
		for _, a := range list {
			if m, ok := a.(map[string]any); ok {
				m[field] = nil
			}
		}
	} else if _, ok := one["id"]; ok {
		one[field] = nil
	}
	out, _ := json.Marshal(one)
	return out
}

func withRewrite(e *env, rewrite func(req *http.Request, status int, body []byte) []byte) {
	hc := *e.opts.HTTPClient
	hc.Transport = rewriteRT{next: hc.Transport, rewrite: rewrite}
	e.opts.HTTPClient = &hc
}

func isOffboard(req *http.Request) bool { return strings.HasSuffix(req.URL.Path, "/offboard") }

// TestDuplicateAnsweredWithTheExistingAction: the API answers a
// duplicate offboard with the existing pending action (MDE-API.md,
// "A duplicate offboard while one is pending ... with the existing pending
// action"). Two requests with different ids and the same comment (a CMDB
// retirement event sent twice) must give created, then already_pending
// (CONTRACT.md "already_pending"); the budget counts created results only.
func TestDuplicateAnsweredWithTheExistingAction(t *testing.T) {
	t.Parallel()
	// The service's clock (its answers' Date, its actions' times) runs six
	// minutes behind the worker's for the first request, then catches up:
	// the first action is six minutes old when the second call is
	// answered, by the answer's Date and by the worker's clock alike.
	apiClock := clockwork.NewFakeClockAt(time.Now().Add(-6 * time.Minute))
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, sim: mdesim.Options{DuplicateReturnsExisting: true, Clock: apiClock}})
	c := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	const comment = "Retired in CMDB (CHG0012345)"
	first := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "d-1", "machineId": m.ID, "comment": comment})
	apiClock.Advance(6 * time.Minute)
	second := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "d-2", "machineId": m.ID, "comment": comment})
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
		t.Fatalf("%d actions", n)
	}
	if first.Outcome != offboard.OutcomeCreated || second.Outcome != offboard.OutcomeAlreadyPending {
		t.Errorf("outcomes %q, %q; want created, already_pending (the second call created nothing)", first.Outcome, second.Outcome)
	}
}

// TestSameCommentHandedBackToAnotherRequest: the API hands the pending
// action back for a duplicate offboard (MDE-API.md), and two requests for
// one device (one by id, one by name) carry the same comment, as a
// campaign's --comment or a CMDB's fixed text does. The action the first
// was answered created for is handed back to the second within the
// seconds that comment and creation time cannot tell apart; the second
// is already_pending with that action (CONTRACT.md "already_pending"),
// its budget slot given back. Observed: both created, the budget counting
// one action twice. Sent together, the device lock serialises them; sent
// one after the other, the second finds the device free.
func TestSameCommentHandedBackToAnotherRequest(t *testing.T) {
	t.Parallel()
	for _, together := range []bool{true, false} {
		t.Run(fmt.Sprintf("together=%v", together), func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, sim: mdesim.Options{DuplicateReturnsExisting: true},
				extra: "    guards:\n      budget: \"10/1h\"\n"})
			c := e.collect("mde.offboard.result.>")
			tt := e.tenants["contoso"]
			m := tt.machines[0]
			const comment = "Retired in CMDB"
			e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "by-id", "machineId": m.ID, "comment": comment}, "contoso:by-id")
			if !together {
				c.wait(t, 1, 20*time.Second)
			}
			e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "by-name", "computerDnsName": m.ComputerDNSName, "comment": comment}, "contoso:by-name")
			got := c.wait(t, 2, 20*time.Second)
			actions := e.sim.Actions(tt.tenantID)
			if len(actions) != 1 {
				t.Fatalf("%d actions, want 1", len(actions))
			}
			outcomes := map[string]int{}
			for key, rs := range got {
				r := rs[len(rs)-1]
				outcomes[r.Outcome]++
				if !strings.Contains(string(r.MachineAction), actions[0].ID) {
					t.Errorf("%s: %s without the device's action %s", key, r.Outcome, actions[0].ID)
				}
			}
			if outcomes[offboard.OutcomeCreated] != 1 || outcomes[offboard.OutcomeAlreadyPending] != 1 {
				t.Errorf("outcomes %v for one action, want one created and one already_pending", outcomes)
			}
			if left := gaugeOf(t, e.reg, "mde_offboard_budget_remaining", map[string]string{"tenant": "contoso"}); left != 9 {
				t.Errorf("budget left %v, want 9: one action counted once", left)
			}
		})
	}
}

// TestFreshActionWithoutCreationTime: MDE-API.md, Machine Action:
// "all may be null or missing". A fresh 201 whose creationDateTimeUtc is
// null is still the action this call created: created, counted in the
// budget. Observed: already_pending, the budget not spent, so a budget of
// 1 lets a second device be offboarded.
func TestFreshActionWithoutCreationTime(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}, noStart: true,
		extra: "    guards:\n      budget: \"1/1h\"\n"})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if isOffboard(req) && status/100 == 2 {
			return nullField(body, "creationDateTimeUtc")
		}
		return body
	})
	e.start()
	createdThenHeldByBudget(t, e, "nt", "fresh action without creationDateTimeUtc")
}

// createdThenHeldByBudget offboards contoso's first device, which must be
// created, then asks for its second, which a budget of 1/1h must hold:
// the first action counted.
func createdThenHeldByBudget(t *testing.T, e *env, prefix, what string) {
	t.Helper()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": prefix + "-1", "machineId": tt.machines[0].ID})
	if r.Outcome != offboard.OutcomeCreated {
		t.Errorf("%s: outcome %q, want created", what, r.Outcome)
	}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": prefix + "-2", "machineId": tt.machines[1].ID}, prefix+"-2")
	time.Sleep(3 * time.Second) // the second request, held, gets no answer
	if n := len(e.sim.Actions(tt.tenantID)); n > 1 {
		t.Errorf("%s: %d actions created under a budget of 1/1h", what, n)
	}
}

// TestLostAnswerActionWithoutCreationTime: the answer of the
// offboard is lost (504 after the action was made), the device comes
// online at once, and the list answers carry no creationDateTimeUtc
// (MDE-API.md: "all may be null or missing"). The worker must not send a
// second offboard that makes a second action (CONTRACT.md "At most one
// Machine Action per device").
func TestLostAnswerActionWithoutCreationTime(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim: mdesim.Options{ActionCompleteAfter: time.Millisecond}})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if strings.HasSuffix(req.URL.Path, "/machineactions") && status == 200 {
			return nullField(body, "creationDateTimeUtc")
		}
		return body
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "lost-nt", "machineId": tt.machines[0].ID})
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions for one device after a lost answer (result %s, %d offboard calls), want 1", n, r.Outcome, r.Attempts)
	}
}

// TestAcceptedWithoutMachineAction: MDE-API.md "Treat any 2xx as
// success". An offboard answered 201 whose body cannot be read as a Machine
// Action (empty, cut, a proxy's page) did create the action; the result
// must not be failed (and dead-lettered, and the budget slot given back)
// while the action exists.
func TestAcceptedWithoutMachineAction(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if isOffboard(req) && status/100 == 2 {
			return nil
		}
		return body
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "empty-1", "machineId": tt.machines[0].ID})
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Fatalf("%d actions", n)
	}
	if r.Outcome != offboard.OutcomeCreated || !strings.Contains(string(r.MachineAction), e.sim.Actions(tt.tenantID)[0].ID) {
		t.Errorf("2xx with an unreadable body: %s %+v, though the action exists; want created with the action", r.Outcome, r.Error)
	}
}

// TestGuardReadFailsAfterLostAnswer: the offboard's answer is lost
// (the action was made) and the new action is missing from lists for a
// moment (MDE-API.md: "fresh actions have been reported missing for a
// moment"); before sending again the worker reads the device for the
// guards, and that read meets the intermittent 404 of MDE-API.md (#13047).
// The result must not be failed machine_not_found (plus a dead letter and
// the budget slot given back) while the request's action exists: as for a
// guard's refusal after a lost answer, the request should go back to
// look for its action.
func TestGuardReadFailsAfterLostAnswer(t *testing.T) {
	t.Parallel()
	var sim *mdesim.Server
	var tenantID string
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true,
		extra: "    guards:\n      requireInactiveFor: 30m\n",
		sim: mdesim.Options{ActionVisibleAfter: 6 * time.Second, OnCall: func(c mdesim.Call) {
			if c.API == "offboard" && c.Status == http.StatusGatewayTimeout {
				sim.InjectStatus(tenantID, "machines", http.StatusNotFound, "ResourceNotFound", "Machine was not found.", 4, 0)
			}
		}}})
	sim, tenantID = e.sim, e.tenants["contoso"].tenantID
	e.opts.Retry.Base, e.opts.Retry.Max = 2500*time.Millisecond, 2500*time.Millisecond
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	id := "lost-guard"
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": tt.machines[0].ID}, id)
	got := c.wait(t, 1, 60*time.Second)
	r := got["contoso/"+id][0]
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 || r.Outcome != offboard.OutcomeCreated {
		t.Errorf("%d actions; result %s %+v, want created with the request's action", n, r.Outcome, r.Error)
	}
}

// TestRefusalWithAHugeCodeIsAnswered: the API (or a gateway before it)
// refuses the offboard with an error code of 2 MiB, within the bytes the
// client reads of an answer. The request must get its failed result
// (CONTRACT.md: every request ends in exactly one result), not come back
// for ever with a result too large to store, calling the API each time.
func TestRefusalWithAHugeCodeIsAnswered(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, "offboard", http.StatusBadRequest, strings.Repeat("X", 2<<20), "refused", 100, 0)
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "huge-code", "machineId": tt.machines[0].ID})
	if r.Outcome != offboard.OutcomeFailed || r.Error.Code != offboard.CodeAPIRejected || len(r.Error.APICode) > 1000 {
		t.Errorf("result %s, code %q, apiCode of %d bytes; want failed %q with a short apiCode",
			r.Outcome, r.Error.Code, len(r.Error.APICode), offboard.CodeAPIRejected)
	}
	if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n != 1 {
		t.Errorf("%d offboard calls, want 1", n)
	}
}

// TestNameLookupAnsweredWithPartOfTheList: the API answers a lookup by
// name with one device and an @odata.nextLink, as a list answer does when
// more pages follow (MDE-API.md: lists are paged). Another device of that
// name may be on the next page: the request fails api_error, and neither
// device is offboarded, rather than the one found being taken for the
// only one.
func TestNameLookupAnsweredWithPartOfTheList(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, "/api/machines") || !strings.Contains(req.URL.Query().Get("$filter"), "computerDnsName") {
			return body
		}
		var list map[string]any
		if json.Unmarshal(body, &list) != nil {
			return body
		}
		list["@odata.nextLink"] = "https://" + req.URL.Host + "/api/machines?$skip=10000"
		out, _ := json.Marshal(list)
		return out
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "paged-name", "computerDnsName": tt.machines[0].ComputerDNSName})
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError || !strings.Contains(r.Error.Message, "part of the list") {
		t.Errorf("result %s %+v; want failed %q: a device is not chosen from part of the list", r.Outcome, r.Error, offboard.CodeAPIError)
	}
	if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n != 0 {
		t.Errorf("%d offboard calls for the one device of the first page, want none", n)
	}
}

// TestActionTooLargeForAResultIsCut: the API answers the offboard (and
// the device's action lists) with a Machine Action of 1.5 MiB, within
// the bytes the client reads of an answer (troubleshootInfo, commands:
// MDE-API.md lists them among its members) but more than a NATS message
// carries. The request must get its one created result, the action cut
// down to its documented members, and no second offboard call: not come
// back for ever with a result too large to store, listing the device's
// actions each time.
func TestActionTooLargeForAResultIsCut(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	pad := strings.Repeat("x", 1536<<10)
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if status/100 != 2 || !isOffboard(req) && !strings.Contains(req.URL.Path, "/machineactions") {
			return body
		}
		var one map[string]any
		if json.Unmarshal(body, &one) != nil {
			return body
		}
		actions := []any{one}
		if list, ok := one["value"].([]any); ok {
			actions = list
		}
		for _, a := range actions {
			if m, ok := a.(map[string]any); ok {
				m["troubleshootInfo"] = pad
			}
		}
		out, _ := json.Marshal(one)
		return out
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "large-action", "machineId": tt.machines[0].ID})
	var a map[string]any
	if err := json.Unmarshal(r.MachineAction, &a); err != nil {
		t.Fatal(err)
	}
	if r.Outcome != offboard.OutcomeCreated || a["id"] != e.sim.Actions(tt.tenantID)[0].ID || a["status"] != "Pending" || a["troubleshootInfo"] != nil {
		t.Errorf("result %s, action %.200v; want created with the action's documented members", r.Outcome, a)
	}
	if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n != 1 {
		t.Errorf("%d offboard calls, want 1", n)
	}
}
