package worker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// goneLooks answers its first look InProgress, the next gone ones the
// API's own 404, then InProgress again.
type goneLooks struct {
	scriptedActions
	gone int
}

func (g *goneLooks) get(ctx context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	g.mu.Lock()
	n := len(g.all)
	g.mu.Unlock()
	if n == 0 || n > g.gone {
		return g.scriptedActions.get(ctx, p, id)
	}
	p.Complete(g.clock.Now())
	g.mu.Lock()
	g.all = append(g.all, g.clock.Now())
	g.mu.Unlock()
	h := http.Header{"Content-Type": []string{"application/json"}}
	return mde.Classify(http.StatusNotFound, h, []byte(`{"error":{"code":"ResourceNotFound","message":"Action not found"}}`), g.clock.Now()), nil
}

// TestTrackingEndedWithTheLastStatusSeenStaysEnded: an action seen
// InProgress, whose event was stored but its acknowledgement lost, reads
// 404 until it is given up: its final event, InProgress, ended, is stored
// but its acknowledgement lost too. The look that follows reads the
// action InProgress again, and ends the tracking with that final event
// again. Before, it published InProgress as a change from Pending, not
// final, after the final event.
func TestTrackingEndedWithTheLastStatusSeenStaysEnded(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	api := &goneLooks{scriptedActions: scriptedFor(clock, "InProgress"), gone: 4}
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	log := &eventLog{}
	tr := trackingSeen(ledger, api, clock, 168*time.Hour, ackLostOnce(log,
		offboard.ActionMsgID("contoso", "act-1", "InProgress"),
		offboard.ActionMsgID("contoso", "act-1", "InProgress")+":ended"))
	runTrackingPending(t, tr)
	ended := func() bool {
		data, _, err := ledger.TrackedState(t.Context(), "contoso", "act-1")
		_, ok := storedTracked(data)
		return err == nil && data != nil && !ok
	}
	for !ended() && clock.Since(start) < 24*time.Hour {
		testwait.Waiters(t, clock, 1)
		clock.Advance(time.Minute)
	}
	events := log.all()
	got := statusChanges(events)
	finalSeen := false
	var after []string
	for _, ev := range events {
		if finalSeen && !ev.Final {
			after = append(after, ev.Status)
		}
		finalSeen = finalSeen || ev.Final
	}
	t.Logf("events %v, %d looks", got, api.count())
	if !ended() {
		t.Fatalf("tracking not ended within a day: %v", got)
	}
	if api.count() <= 5 {
		t.Fatalf("events %v: %d looks, want a look after the end's event", got, api.count())
	}
	if len(after) > 0 {
		t.Errorf("events %v: %d not final after the final event", got, len(after))
	}
}
