package worker

import (
	"context"
	"encoding/json"
	"errors"
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

// refusedActions answers every look 401: the tenant's credentials
// refused (a secret rotated), which says nothing of the action.
type refusedActions struct{ fakeActions }

func (r *refusedActions) permit(context.Context) (*limiter.Permit, error) {
	return r.lim.AcquireLow(context.Background())
}

func (r *refusedActions) get(_ context.Context, p *limiter.Permit, _ string) (*mde.Verdict, error) {
	p.Complete(r.clock.Now())
	r.mu.Lock()
	r.all = append(r.all, r.clock.Now())
	r.mu.Unlock()
	return &mde.Verdict{Class: mde.Final, Reason: mde.ReasonUnauthorized, Status: 401, Sent: true}, nil
}

// TestTrackingFinalEventOutIsRepeatedAfterALookThatSaysNothing: a
// replica stopped right after an action's final event went out, before
// the end of its tracking was stored, leaves the state that records that
// final event. The replica that takes the action up looks, and when the
// look says nothing (the credentials refused meanwhile), publishes that
// event again at once, under its message id (the results stream drops
// it), and stores the end. Before, it looked again and again until
// maxAge, a week on (172 looks), and published the final event then,
// past the stream's duplicate window of a day, which stored it twice.
func TestTrackingFinalEventOutIsRepeatedAfterALookThatSaysNothing(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	oneTracked(t, ledger, start)
	cfg := config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
		MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)}
	log := &eventLog{}
	lim := func() *limiter.Limiter { return limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows) }

	// The first replica sees Succeeded and stops once its final event is
	// out.
	stoppedAfterFinalEvent(t, ledger, clock, cfg, log)
	events := log.all()
	if len(events) != 1 || !events[0].Final || events[0].Status != "Succeeded" {
		t.Fatalf("events %+v, want the final Succeeded", events)
	}

	// The other replica takes the action up while the API refuses the
	// credentials.
	refused := &refusedActions{fakeActions{clock: clock, windows: trackWindows, lim: lim()}}
	runTracker(t, newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: refused, clock: clock, log: zap.NewNop(), cfg: cfg,
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	}))
	untilRepeated(t, clock, log, start)
	events = log.all()
	if len(events) < 2 {
		t.Fatalf("the final event not published again in 8 days, %d looks", refused.count())
	}
	again := events[1].ObservedAt.Sub(events[0].ObservedAt)
	t.Logf("final event published again %v after the first, %d looks by the other replica", again, refused.count())
	if again >= 24*time.Hour || refused.count() > 1 {
		t.Errorf("final event published again %v after the first (the duplicate window is 24h), after %d looks", again, refused.count())
	}
	waitFor(t, "the tracking's end stored", func() bool {
		data, _, err := ledger.TrackedState(t.Context(), "contoso", "act-1")
		st, ok := storedTracked(data)
		return err == nil && !ok && st == nil && data != nil
	})
}

// TestTrackingFinalEventOutIsRepeatedWhileLooksGetNoQuota: an action
// whose final event went out, the end of its tracking not stored (its
// replica stopped in between), is taken up by a replica whose looks get
// no quota (the offboard lookups take it all). It publishes the final
// event again and stores the end without waiting for a look. Before, its
// look waited for quota until maxAge, a week, and the event came again
// past the results stream's duplicate window.
func TestTrackingFinalEventOutIsRepeatedWhileLooksGetNoQuota(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	st := tracked{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), ActionID: "act-1",
		Status: "Pending", Final: "Succeeded", Since: start, Next: start, Interval: time.Minute}
	storeTracked(t, ledger, st)
	log := &eventLog{}
	runTracker(t, newTracker(trackerConfig{
		tenant: "contoso", store: ledger, clock: clock, log: zap.NewNop(),
		actions: &starvedActions{fakeActions{clock: clock, windows: trackWindows}},
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3, lagRefresh: 10 * time.Millisecond,
	}))
	deadline := time.Now().Add(5 * time.Second)
	for len(log.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	events := log.all()
	if len(events) != 1 || events[0].Status != "Succeeded" || !events[0].Final {
		t.Fatalf("events %+v within 5 s of a look waiting for quota, want the final Succeeded again", events)
	}
	waitFor(t, "the tracking's end stored", func() bool {
		data, _, err := ledger.TrackedState(t.Context(), "contoso", "act-1")
		_, ok := storedTracked(data)
		return err == nil && data != nil && !ok
	})
}

// TestTrackingFinalEventOutIsRepeatedWithinTheWindowAtALongInterval: with
// looks a day or more apart (maxInterval), a replica stopped right after
// an action's final event went out, before the end of its tracking was
// stored, leaves the action to another replica within minutes, which
// publishes that event again inside the results stream's duplicate
// window of a day. Before, the state stored with the final event held
// the action for its whole interval, 48 h, and the event came again past
// the window, stored twice.
func TestTrackingFinalEventOutIsRepeatedWithinTheWindowAtALongInterval(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	st := tracked{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), ActionID: "act-1",
		Status: "Pending", Since: start, Next: start, Interval: 48 * time.Hour}
	storeTracked(t, ledger, st)
	cfg := config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
		MaxInterval: config.Duration(48 * time.Hour), MaxAge: config.Duration(168 * time.Hour)}
	log := &eventLog{}

	stoppedAfterFinalEvent(t, ledger, clock, cfg, log)
	if events := log.all(); len(events) != 1 || !events[0].Final {
		t.Fatalf("events %+v, want the final Succeeded", events)
	}

	other := scriptedFor(clock, "Succeeded")
	runTracker(t, newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: &other, clock: clock, log: zap.NewNop(), cfg: cfg,
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	}))
	untilRepeated(t, clock, log, start)
	events := log.all()
	if len(events) < 2 {
		t.Fatalf("the final event not published again in 8 days")
	}
	again := events[1].ObservedAt.Sub(events[0].ObservedAt)
	t.Logf("final event published again %v after the first", again)
	if events[1].Status != "Succeeded" || again >= 24*time.Hour {
		t.Errorf("final event %s published again %v after the first (the duplicate window is 24h)", events[1].Status, again)
	}
}

// TestTrackingFinalEventRefusedIsTriedAgainWithinTheWindow: with looks a
// day or more apart (maxInterval), an action's final event stored but its
// acknowledgement lost (NATS slow a moment) is tried again within the
// results stream's duplicate window of a day, so the stream drops the
// repeat. Before, the try again was backed off as any failed look,
// doubled up to maxInterval: 48 h on, past the window, stored twice.
func TestTrackingFinalEventRefusedIsTriedAgainWithinTheWindow(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	st := tracked{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), ActionID: "act-1",
		Status: "Pending", Since: start, Next: start, Interval: 48 * time.Hour}
	storeTracked(t, ledger, st)
	log := &eventLog{}
	lost := true
	api := scriptedFor(clock, "Succeeded")
	runTracker(t, newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(48 * time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			if err := log.publish(ctx, subject, msgID, data); err != nil {
				return err
			}
			if lost {
				lost = false
				return errors.New("nats: timeout") // stored, its acknowledgement lost
			}
			return nil
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	}))
	untilRepeated(t, clock, log, start)
	events := log.all()
	if len(events) < 2 {
		t.Fatalf("the final event not tried again in 8 days")
	}
	again := events[1].ObservedAt.Sub(events[0].ObservedAt)
	t.Logf("final event tried again %v after the first", again)
	if events[1].Status != "Succeeded" || again >= 24*time.Hour {
		t.Errorf("final event %s tried again %v after the first (the duplicate window is 24h)", events[1].Status, again)
	}
}

// stoppedAfterFinalEvent runs a replica over ledger that reads act-1
// Succeeded and stops right after its final event is published, before
// it hears back, as a replica killed then does: the event stored, the end
// of the tracking not. It returns once that replica has stopped.
func stoppedAfterFinalEvent(t *testing.T, ledger *queue.Ledger, clock clockwork.Clock, cfg config.Tracking, log *eventLog) {
	t.Helper()
	killed, kill := context.WithCancel(context.Background())
	api := scriptedFor(clock, "Succeeded")
	first := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: &api, clock: clock, log: zap.NewNop(), cfg: cfg,
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			if err := log.publish(ctx, subject, msgID, data); err != nil {
				return err
			}
			kill()
			return errors.New("nats: connection closed")
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	done := make(chan struct{})
	go func() { defer close(done); first.run(killed) }()
	testwait.For(t, done, 20*time.Second, "the first replica's final event")
}

// storeTracked stores st in ledger as a replica leaves it, so that a test
// starts from a state the code under test did not write.
func storeTracked(t *testing.T, ledger *queue.Ledger, st tracked) {
	t.Helper()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.TrackNew(t.Context(), "contoso", st.ActionID, data); err != nil {
		t.Fatal(err)
	}
}

// untilRepeated moves the clock on in steps of 10 minutes, each once the
// tracker waits, until log holds a second event or 8 days have gone since
// start: past a week's maxAge, so that a repeat left to the end shows.
func untilRepeated(t *testing.T, clock *clockwork.FakeClock, log *eventLog, start time.Time) {
	t.Helper()
	for len(log.all()) < 2 && clock.Since(start) < 8*24*time.Hour {
		testwait.Waiters(t, clock, 1)
		clock.Advance(10 * time.Minute)
	}
}
