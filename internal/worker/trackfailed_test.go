package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingBacksOffAfterFailedLooks: an action whose event the server
// refuses at every look (larger than its max payload, no bound set to cut
// it) is looked at with a doubling interval, up to maxInterval, as after
// a look that says nothing: 12 looks in 6 hours at most, a first check
// of a minute and a maxInterval of an hour. Each failed look was tried
// again after the action's plain interval: a look a minute until maxAge,
// 360 in those 6 hours, each taking a call of the budget the other
// followed actions share.
func TestTrackingBacksOffAfterFailedLooks(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	scripted := scriptedFor(clock, "Succeeded")
	scripted.pad = 1 << 20
	api := &lookRecorder{actionReader: &scripted, clock: clock}
	var log eventLog
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			if err := queue.PublishJSON(ctx, js, subject, msgID, data); err != nil {
				return err
			}
			return log.publish(ctx, subject, msgID, data)
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, tr)
	for range 360 {
		blockUntil(t, clock, 1)
		clock.Advance(time.Minute)
	}
	blockUntil(t, clock, 1)
	looks := api.looks()
	if len(looks) < 6 || len(looks) > 12 {
		t.Errorf("%d looks in 6 hours, want 6 to 12: %v", len(looks), looks[:min(len(looks), 12)])
	}
	if evs := log.all(); len(evs) != 1 || evs[0].Status != "Pending" {
		t.Errorf("%d events, want the first one only", len(evs))
	}
}
