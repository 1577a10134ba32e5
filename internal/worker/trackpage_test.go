package worker

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// firstLooks answers its first n looks with first's verdict, then as
// scriptedActions does: Succeeded.
type firstLooks struct {
	scriptedActions
	n     int
	first func(*limiter.Permit) *mde.Verdict
}

func (f *firstLooks) get(ctx context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	f.mu.Lock()
	early := f.n > 0
	if early {
		f.n--
	}
	f.mu.Unlock()
	if !early {
		return f.scriptedActions.get(ctx, p, id)
	}
	return f.first(p), nil
}

// pageLooks answers its first n looks with a web server's 404 page, not
// an answer of the API.
func pageLooks(clock clockwork.Clock, n int) *firstLooks {
	return &firstLooks{scriptedActions: scriptedFor(clock, "Succeeded"), n: n, first: func(p *limiter.Permit) *mde.Verdict {
		p.Complete(clock.Now())
		h := http.Header{"Content-Type": []string{"text/html"}}
		return mde.Classify(http.StatusNotFound, h, []byte("<html><body><h1>404 Not Found</h1></body></html>"), clock.Now())
	}}
}

// refusedLooks answers its first n looks as the login host refusing the
// tenant's credentials: no call sent.
func refusedLooks(clock clockwork.Clock, n int) *firstLooks {
	return &firstLooks{scriptedActions: scriptedFor(clock, "Succeeded"), n: n, first: func(p *limiter.Permit) *mde.Verdict {
		p.Release()
		return mde.ClassifyError(context.Background(), &mde.TokenError{Final: true, Host: "login.microsoftonline.com"}, false)
	}}
}

// TestTrackingOutlivesAPageNotFound: a 404 that is not the API's own
// answer (a proxy's or a web server's page, an apiBaseURL with a path
// too many) says nothing about the action: it stays followed, and its
// status is published once the API answers again. Counted as the API's
// 404, four such pages in a row gave the tracking up as if the action
// were gone.
func TestTrackingOutlivesAPageNotFound(t *testing.T) {
	t.Parallel()
	wantFollowedToTheEnd(t, func(clock clockwork.Clock) *firstLooks { return pageLooks(clock, 4) })
}

// wantFollowedToTheEnd follows a Pending action whose first looks are
// looks' and wants its events to be Pending, then Succeeded, final: the
// looks gave nothing up.
func wantFollowedToTheEnd(t *testing.T, looks func(clockwork.Clock) *firstLooks) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	tr, log := newWeekTracker(t, looks(clock), clock)
	runTrackingPending(t, tr)
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return evs[len(evs)-1].Final
	})
	var got []string
	for _, ev := range log.all() {
		got = append(got, fmt.Sprintf("%s final=%v", ev.Status, ev.Final))
	}
	if len(got) != 2 || got[1] != "Succeeded final=true" {
		t.Errorf("events %v, want Pending, then Succeeded final", got)
	}
}
