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
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// waitingActions never gets quota, as starvedActions, and says when a
// look starts waiting for it.
type waitingActions struct {
	starvedActions
	waiting chan struct{}
}

func (w *waitingActions) permit(ctx context.Context) (*limiter.Permit, error) {
	select {
	case w.waiting <- struct{}{}:
	default:
	}
	return w.starvedActions.permit(ctx)
}

// TestTrackerMemoryStaysBoundedWhileStarved: while a look waits for
// quota the offboard lookups take (no scan of the ledger comes
// meanwhile), 3,000 actions created are followed, and the tracker holds
// no more than its window of 100 of them, their ids included. Before, the
// ids of every action followed since the last scan were kept, to count
// each once: 3,000 of them, one more for each action created, for as
// long as the looks waited.
func TestTrackerMemoryStaysBoundedWhileStarved(t *testing.T) {
	t.Parallel()
	const n, window = 3000, 100
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &waitingActions{starvedActions{fakeActions{clock: clock, windows: trackWindows}}, make(chan struct{}, 1)}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3, window: window,
	})
	runTrackingPending(t, tr)
	testwait.Waiters(t, clock, 1)
	clock.Advance(time.Hour)
	testwait.For(t, api.waiting, 10*time.Second, "the first look waiting for quota")
	for i := range n {
		res := &offboard.Result{RequestID: fmt.Sprintf("r-%d", i+2), MachineID: fmt.Sprintf("%040x", i+2),
			MachineAction: json.RawMessage(fmt.Sprintf(`{"id":"act-%d","type":"Offboard","status":"Pending"}`, i+2))}
		if err := tr.track(t.Context(), res); err != nil {
			t.Fatal(err)
		}
	}
	tr.mu.Lock()
	followed, queued, ids, counted := tr.followed, len(tr.queue), len(tr.ids), len(tr.counted)
	tr.mu.Unlock()
	t.Logf("followed %d; held %d, ids %d, ids counted %d", followed, queued, ids, counted)
	if followed != n+1 {
		t.Errorf("followed %d, want %d", followed, n+1)
	}
	if queued > window || ids > window+1 || counted > window {
		t.Errorf("the tracker holds %d actions, %d ids, and %d ids counted since the last scan: more than its window of %d", queued, ids, counted, window)
	}
}
