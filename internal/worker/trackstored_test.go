package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// answerLost is a tracking store whose first TrackNew stores the state
// and then fails as an answer that never came (NATS away a moment after
// the server stored it).
type answerLost struct {
	trackStore
	once sync.Once
}

func (s *answerLost) TrackNew(ctx context.Context, tenant, actionID string, state []byte) error {
	err := s.trackStore.TrackNew(ctx, tenant, actionID, state)
	lost := false
	s.once.Do(func() { lost = err == nil })
	if lost {
		return context.DeadlineExceeded
	}
	return err
}

// TestTrackingStoredWhileItsAnswerWasLostIsFollowed: the state of a
// created action is stored, but the answer is lost; the request is
// answered again from the ledger, and its tracking, which finds the state
// stored, follows the action from then on: its first look comes after
// firstCheck. Before, the state was taken for another replica's and not
// held, and the action was looked at only once the next scan of the
// ledger (five minutes on) found it.
func TestTrackingStoredWhileItsAnswerWasLostIsFollowed(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Succeeded")
	_, js := natstest.Connect(t)
	log := &eventLog{}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: &answerLost{trackStore: contosoLedger(t, js)}, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTracker(t, tr)
	// The first scan of the ledger is over: the tracker waits.
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := clock.BlockUntilContext(wctx, 1); err != nil {
		t.Fatal(err)
	}
	res := &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1),
		MachineAction: json.RawMessage(`{"id":"act-1","type":"Offboard","status":"Pending"}`)}
	if err := tr.track(t.Context(), res); err == nil {
		t.Fatal("the first tracking's lost answer was not reported")
	}
	// Answered again from the ledger.
	if err := tr.track(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	for range 6 { // two minutes
		wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := clock.BlockUntilContext(wctx, 1)
		wcancel()
		if err != nil {
			t.Fatalf("the tracker never waited: %v", err)
		}
		clock.Advance(20 * time.Second)
	}
	// The look due within those two minutes, if any, ends at once.
	deadline := time.Now().Add(5 * time.Second)
	for {
		events := log.all()
		if len(events) > 0 && events[len(events)-1].Final {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events after two minutes: %+v; want the action followed to Succeeded after its first minute", events)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTrackingStoredWhileItsAnswerWasLostIsCounted: the action whose
// state was stored while the answer was lost, held once the request is
// answered again from the ledger, counts among the followed actions (the
// tracked actions gauge, the spread of looks) until the next scan counts
// it. Before, it was held but not counted: the gauge said one fewer, and
// its end took one more off.
func TestTrackingStoredWhileItsAnswerWasLostIsCounted(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Pending")
	_, js := natstest.Connect(t)
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: &answerLost{trackStore: contosoLedger(t, js)}, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	res := &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1),
		MachineAction: json.RawMessage(`{"id":"act-1","type":"Offboard","status":"Pending"}`)}
	if err := tr.track(t.Context(), res); err == nil {
		t.Fatal("the first tracking's lost answer was not reported")
	}
	for range 2 { // answered again from the ledger, then once more
		if err := tr.track(t.Context(), res); err != nil {
			t.Fatal(err)
		}
	}
	tr.mu.Lock()
	followed, held := tr.followed, len(tr.queue)
	tr.mu.Unlock()
	if followed != 1 || held != 1 {
		t.Errorf("followed %d, held %d; want 1 and 1", followed, held)
	}
}

// TestTrackingFoundStoredIsCountedOnce: a followed action the last scan
// counted but did not hold (more actions are followed than the tracker
// holds), whose request is answered again from the ledger, is not
// counted again, however often it is answered. Before, each answer
// counted it once more: the tracked actions gauge grew, and the looks
// were spread over actions that are not there, until the next scan.
func TestTrackingFoundStoredIsCountedOnce(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Pending")
	_, js := natstest.Connect(t)
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3, window: 1,
	})
	result := func(i int) *offboard.Result {
		return &offboard.Result{RequestID: fmt.Sprintf("r-%d", i), MachineID: fmt.Sprintf("%040x", i),
			MachineAction: json.RawMessage(fmt.Sprintf(`{"id":"act-%d","type":"Offboard","status":"Pending"}`, i))}
	}
	for i := range 2 {
		if err := tr.track(t.Context(), result(i)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second) // act-1 is due after act-0
	}
	if err := tr.load(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 3 { // act-1's request answered again from the ledger
		if err := tr.track(t.Context(), result(1)); err != nil {
			t.Fatal(err)
		}
	}
	tr.mu.Lock()
	followed, held := tr.followed, len(tr.queue)
	tr.mu.Unlock()
	if followed != 2 || held != 1 {
		t.Errorf("followed %d, held %d; want 2 and 1", followed, held)
	}
}
