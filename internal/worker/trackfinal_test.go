package worker

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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
	trackedToOneFinalEvent(t, clock, js, store, &api)
}
