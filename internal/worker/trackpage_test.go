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

// pageActions answers its first pages looks with a web server's 404
// page, not an answer of the API, then as scriptedActions does.
type pageActions struct {
	scriptedActions
	pages int
}

func (p *pageActions) get(ctx context.Context, pm *limiter.Permit, id string) (*mde.Verdict, error) {
	p.mu.Lock()
	page := p.pages > 0
	if page {
		p.pages--
	}
	p.mu.Unlock()
	if !page {
		return p.scriptedActions.get(ctx, pm, id)
	}
	pm.Complete(p.clock.Now())
	h := http.Header{"Content-Type": []string{"text/html"}}
	return mde.Classify(http.StatusNotFound, h, []byte("<html><body><h1>404 Not Found</h1></body></html>"), p.clock.Now()), nil
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
	api := &pageActions{pages: 4, scriptedActions: scriptedActions{statuses: []string{"Succeeded"},
		fakeActions: fakeActions{clock: clock, windows: trackWindows,
			lim: limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows)}}}
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
