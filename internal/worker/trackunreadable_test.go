package worker

import (
	"net/http"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// unreadableLooks answers its first n looks 200 with body, which is not
// a Machine Action the tracker can take as the one looked at.
func unreadableLooks(clock clockwork.Clock, n int, contentType, body string) *firstLooks {
	return &firstLooks{scriptedActions: scriptedFor(clock, "Succeeded"), n: n, first: func(p *limiter.Permit) *mde.Verdict {
		p.Complete(clock.Now())
		h := http.Header{"Content-Type": []string{contentType}}
		return mde.Classify(http.StatusOK, h, []byte(body), clock.Now())
	}}
}

// TestTrackingBacksOffWhileAnswersAreUnreadable: an answer that cannot be
// read as the action looked at (a proxy's page answered 200, an action
// without its id, another action) says nothing about it, as a 404 page
// does: the looks back off, and the action's status is published once
// the API answers again. Rescheduled at an unchanged interval, and
// without the stretch that the number of followed actions asks for, such
// answers took a machineactions call at every action's first interval
// (a minute) for a week.
func TestTrackingBacksOffWhileAnswersAreUnreadable(t *testing.T) {
	t.Parallel()
	for name, mk := range map[string]func(clockwork.Clock) actionReader{
		"a proxy's page": func(clock clockwork.Clock) actionReader {
			return unreadableLooks(clock, 4, "text/html", "<html><body>Sign in to continue</body></html>")
		},
		"no id": func(clock clockwork.Clock) actionReader {
			return unreadableLooks(clock, 4, "application/json", `{"type":"Offboard","status":"Pending"}`)
		},
		"another action": func(clock clockwork.Clock) actionReader {
			return unreadableLooks(clock, 4, "application/json", `{"id":"act-2","type":"Offboard","status":"Succeeded"}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			evs := followBackingOff(t, mk)
			if last := evs[len(evs)-1]; last.Status != "Succeeded" || last.PreviousStatus != "Pending" || len(evs) != 2 {
				t.Errorf("events %+v, want Pending then Succeeded", evs)
			}
		})
	}
}
