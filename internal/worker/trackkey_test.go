package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingAnActionOfAnOverlongID: an action whose id is thousands of
// characters long (an API, or a proxy in front of it, answering garbage)
// is followed like any other, its state stored under a key of bounded
// length. Stored under its id encoded whole, the key made the ledger's
// requests longer than a NATS protocol line may be: the server closed the
// worker's connection, and the request, left for the tracking it could
// not start, came back and closed it again.
func TestTrackingAnActionOfAnOverlongID(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	tr, log, clock := streamTracking(t, js, 0, "Succeeded")
	id := "act-" + strings.Repeat("7", 5000)
	action := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":"Pending"}`, id)
	if err := tr.track(t.Context(), &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), MachineAction: json.RawMessage(action)}); err != nil {
		t.Fatalf("track: %v (connection %v)", err, nc.Status())
	}
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return len(evs) > 0 && evs[len(evs)-1].Final
	})
	if evs := log.all(); len(evs) != 2 || evs[1].Status != "Succeeded" || evs[1].ActionID != id {
		t.Errorf("%d events, the last %s final=%v", len(evs), evs[len(evs)-1].Status, evs[len(evs)-1].Final)
	}
	if !nc.IsConnected() {
		t.Errorf("connection %v", nc.Status())
	}
}

// newStreamTracker is a week-long tracker of contoso over store and api,
// whose events go to the results stream of js and to the log it returns;
// maxEvent 0: no bound on an event's size.
func newStreamTracker(js jetstream.JetStream, store trackStore, api actionReader, clock clockwork.Clock, maxEvent int) (*tracker, *eventLog) {
	log := &eventLog{}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			if err := queue.PublishJSON(ctx, js, subject, msgID, data); err != nil {
				return err
			}
			return log.publish(ctx, subject, msgID, data)
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3, maxEvent: maxEvent,
	})
	return tr, log
}

// streamTracking runs a week-long tracker of contoso (newStreamTracker)
// over a ledger in js, on a fake clock, whose looks read statuses in
// turn; maxEvent 0: no bound on an event's size.
func streamTracking(t *testing.T, js jetstream.JetStream, maxEvent int, statuses ...string) (*tracker, *eventLog, *clockwork.FakeClock) {
	t.Helper()
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, statuses...)
	tr, log := newStreamTracker(js, ledger, &api, clock, maxEvent)
	runTracker(t, tr)
	return tr, log, clock
}

// runTracker runs tr's loop until the test ends.
func runTracker(t *testing.T, tr *tracker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
