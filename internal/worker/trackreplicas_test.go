package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// heldActions answers its first look only once released (a call that
// waits out a 429's pause, say), with the status it is given.
type heldActions struct {
	fakeActions
	status   string
	entered  chan struct{}
	released chan struct{}
}

func (h *heldActions) permit(context.Context) (*limiter.Permit, error) {
	return h.lim.AcquireLow(context.Background())
}

func (h *heldActions) get(_ context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	if h.entered != nil {
		close(h.entered)
		h.entered = nil
		<-h.released
	}
	p.Complete(h.clock.Now())
	body := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":%q}`, id, h.status)
	return &mde.Verdict{Class: mde.Success, Status: 200, Body: []byte(body), Sent: true}, nil
}

// TestTrackingLookOutlivedByAnotherReplicasIsDropped: a replica's look
// that lasts longer than the interval (its call waiting out a 429's
// pause) is overtaken by another replica's, which sees the action
// Succeeded and ends the tracking. What the slow look read, older, is
// neither published after the final event nor stored over the ended
// mark: the action's events ended with a non-final InProgress, and the
// action was followed again.
func TestTrackingLookOutlivedByAnotherReplicasIsDropped(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	oneTracked(t, ledger, start)
	var log eventLog
	newReplica := func(api actionReader) {
		tr := newTracker(trackerConfig{
			tenant: "contoso", store: ledger, actions: api, clock: clock, log: zap.NewNop(),
			cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
				MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
			publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
		})
		runTracker(t, tr)
	}
	lim := func() *limiter.Limiter { return limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows) }
	slow := &heldActions{fakeActions: fakeActions{clock: clock, windows: trackWindows, lim: lim()},
		status: "InProgress", entered: make(chan struct{}), released: make(chan struct{})}
	entered := slow.entered
	newReplica(slow)
	// The slow replica claimed the look, its call under way.
	testwait.For(t, entered, 10*time.Second, "the slow replica's call")
	newReplica(&heldActions{fakeActions: fakeActions{clock: clock, windows: trackWindows, lim: lim()}, status: "Succeeded"})
	testwait.Waiters(t, clock, 1)
	clock.Advance(2 * time.Minute) // past the slow replica's claim
	waitFor(t, "the other replica's final event", func() bool {
		events := log.all()
		return len(events) > 0 && events[len(events)-1].Final
	})
	close(slow.released)
	testwait.Waiters(t, clock, 2) // both replicas wait again
	events := log.all()
	if last := events[len(events)-1]; !last.Final || last.Status != "Succeeded" {
		t.Errorf("last event %s final=%v after the final Succeeded", last.Status, last.Final)
	}
	data, _, err := ledger.TrackedState(t.Context(), "contoso", "act-1")
	if err != nil {
		t.Fatal(err)
	}
	var cur tracked
	if err := json.Unmarshal(data, &cur); err != nil || cur.ActionID != "" {
		t.Errorf("the ended tracking was stored over: %s", data)
	}
}

// oneTracked follows act-1 in the ledger, Pending since start and due
// then, its interval a minute, and returns its state.
func oneTracked(t *testing.T, ledger *queue.Ledger, start time.Time) tracked {
	t.Helper()
	st := tracked{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), ActionID: "act-1",
		Status: "Pending", Since: start, Next: start, Interval: time.Minute}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.TrackNew(t.Context(), "contoso", st.ActionID, data); err != nil {
		t.Fatal(err)
	}
	return st
}
