package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// endLostOnce is a ledger whose first write of an ended mark is lost (a
// NATS timeout, the replica killed before it): the final event is out,
// the action's state still stands.
type endLostOnce struct {
	trackStore
	lost atomic.Bool
}

func (e *endLostOnce) TrackOver(ctx context.Context, tenant, actionID string, state []byte, rev uint64) (uint64, error) {
	if bytes.HasPrefix(state, []byte(`{"ended"`)) && e.lost.CompareAndSwap(false, true) {
		return 0, errors.New("ledger track: nats: timeout")
	}
	return e.trackStore.TrackOver(ctx, tenant, actionID, state, rev)
}

// TestTrackingFinalEventIsTheLast: an action seen Succeeded, its final
// event out but the end of its tracking not stored, and then older than
// maxAge, gets no second final event. The state stored before the final
// event said Pending: given up at maxAge, the action got a final
// Pending:ended after its final Succeeded.
func TestTrackingFinalEventIsTheLast(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Pending", "Pending", "Succeeded") // looks at 1, 3 and 7 min
	store := &endLostOnce{trackStore: contosoLedger(t, js)}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(10 * time.Minute)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			return queue.PublishJSON(ctx, js, subject, msgID, data)
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, tr)
	trackUntil(t, clock, func() bool {
		data, _, err := store.TrackedState(t.Context(), "contoso", "act-1")
		var st tracked
		return err == nil && json.Unmarshal(data, &st) == nil && st.ActionID == ""
	})
	got, final := storedActionEvents(t, js)
	if final != 1 {
		t.Errorf("events stored %v: %d final, want 1", got, final)
	}
}
