package worker

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
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

func succeedingActions(clock clockwork.Clock) scriptedActions {
	return scriptedActions{statuses: []string{"Succeeded"},
		fakeActions: fakeActions{clock: clock, windows: trackWindows,
			lim: limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows)}}
}

// pageLooks answers its first n looks with a web server's 404 page, not
// an answer of the API.
func pageLooks(clock clockwork.Clock, n int) *firstLooks {
	return &firstLooks{scriptedActions: succeedingActions(clock), n: n, first: func(p *limiter.Permit) *mde.Verdict {
		p.Complete(clock.Now())
		h := http.Header{"Content-Type": []string{"text/html"}}
		return mde.Classify(http.StatusNotFound, h, []byte("<html><body><h1>404 Not Found</h1></body></html>"), clock.Now())
	}}
}

// refusedLooks answers its first n looks as the login host refusing the
// tenant's credentials: no call sent.
func refusedLooks(clock clockwork.Clock, n int) *firstLooks {
	return &firstLooks{scriptedActions: succeedingActions(clock), n: n, first: func(p *limiter.Permit) *mde.Verdict {
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
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := pageLooks(clock, 4)
	var log eventLog
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
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
