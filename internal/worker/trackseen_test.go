package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingGivenUpCarriesTheLastStatusSeen: an action seen InProgress,
// whose event was stored but its acknowledgement lost (NATS slow a
// moment, or the replica stopped before the state was written), is given
// up at maxAge before the next look. Its final event carries InProgress,
// the last status seen. Before, it carried the Pending stored before the
// InProgress event went out: the events went Pending, InProgress, then
// Pending, final, as if the action had gone back.
func TestTrackingGivenUpCarriesTheLastStatusSeen(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	api := scriptedFor(clock, "InProgress")
	_, js := natstest.Connect(t)
	log := &eventLog{}
	// A look at 1 minute, then the action's end at 2 minutes comes
	// before the back-off's next look.
	tr := trackingSeen(contosoLedger(t, js), &api, clock, 2*time.Minute,
		ackLostOnce(log, offboard.ActionMsgID("contoso", "act-1", "InProgress")))
	runTrackingPending(t, tr)
	firstLookInProgress(t, tr, clock, log)
	untilFinal(t, clock, log, start)
	var got []string
	for _, ev := range log.all() {
		got = append(got, fmt.Sprintf("%s<-%s final=%v at %v", ev.Status, ev.PreviousStatus, ev.Final, ev.ObservedAt.Sub(start)))
	}
	t.Logf("events %v, %d looks", got, api.count())
	if !lastFinal(log) {
		t.Fatalf("no final event within an hour of a 2-minute maxAge: %v", got)
	}
	if last := log.all()[len(got)-1]; last.Status != "InProgress" {
		t.Errorf("events %v: the final event carries %s, after InProgress was seen and published", got, last.Status)
	}
}

// TestTrackingPreviousStatusIsTheLastSeen: an action seen InProgress,
// whose event was stored but its acknowledgement lost, then seen
// Succeeded, has a final event whose previousStatus is InProgress. Before,
// it was Pending, stored before the InProgress event went out: the events
// read Pending, InProgress from Pending, then Succeeded from Pending.
func TestTrackingPreviousStatusIsTheLastSeen(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	api := scriptedFor(clock, "InProgress", "Succeeded")
	_, js := natstest.Connect(t)
	log := &eventLog{}
	tr := trackingSeen(contosoLedger(t, js), &api, clock, 168*time.Hour,
		ackLostOnce(log, offboard.ActionMsgID("contoso", "act-1", "InProgress")))
	runTrackingPending(t, tr)
	trackTenMinutes(t, clock)
	got := statusChanges(log.all())
	want := []string{"Pending<- final=false", "InProgress<-Pending final=false", "Succeeded<-InProgress final=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestTrackingLookWithoutStatusKeepsTheLastStatusSeen: an action seen
// InProgress, whose event was stored but its acknowledgement lost, is
// read next without a status (the API may answer any member null), then
// given up at maxAge. Its final event carries InProgress, the last status
// seen. Before, the look without a status was taken as no change from the
// Pending stored before the InProgress event went out, and the final
// event carried Pending, as if the action had gone back.
func TestTrackingLookWithoutStatusKeepsTheLastStatusSeen(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	api := scriptedFor(clock, "InProgress", "null")
	_, js := natstest.Connect(t)
	log := &eventLog{}
	tr := trackingSeen(contosoLedger(t, js), &api, clock, 20*time.Minute,
		ackLostOnce(log, offboard.ActionMsgID("contoso", "act-1", "InProgress")))
	runTrackingPending(t, tr)
	untilFinal(t, clock, log, start)
	got := statusChanges(log.all())
	t.Logf("events %v, %d looks", got, api.count())
	if !lastFinal(log) {
		t.Fatalf("no final event within an hour of a 20-minute maxAge: %v", got)
	}
	if api.count() < 2 {
		t.Fatalf("events %v: %d looks, want the look without a status before the end", got, api.count())
	}
	if last := log.all()[len(got)-1]; last.Status != "InProgress" {
		t.Errorf("events %v: the final event carries %s, after InProgress was seen and published", got, last.Status)
	}
}

// TestTrackingEndTriedAgainKeepsTheLastStatusSeen: an action seen
// InProgress, whose event was stored but its acknowledgement lost, is
// given up at maxAge before the next look; that final event is refused
// (NATS away a moment) and the end tried again. The final event stored
// is InProgress from InProgress, as the first try made it. Before, the
// try again named Pending, the status stored before the InProgress event
// went out, as its previous one: InProgress from Pending, after
// InProgress from Pending.
func TestTrackingEndTriedAgainKeepsTheLastStatusSeen(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	api := scriptedFor(clock, "InProgress")
	_, js := natstest.Connect(t)
	log := &eventLog{}
	lost := ackLostOnce(log, offboard.ActionMsgID("contoso", "act-1", "InProgress"))
	var refusedOnce sync.Once
	tr := trackingSeen(contosoLedger(t, js), &api, clock, 2*time.Minute,
		func(ctx context.Context, subject, msgID string, data []byte) error {
			refused := false
			if msgID == offboard.ActionMsgID("contoso", "act-1", "InProgress")+":ended" {
				refusedOnce.Do(func() { refused = true })
			}
			if refused {
				return errors.New("nats: no responders available for request") // not stored
			}
			return lost(ctx, subject, msgID, data)
		})
	runTrackingPending(t, tr)
	firstLookInProgress(t, tr, clock, log)
	untilFinal(t, clock, log, start)
	got := statusChanges(log.all())
	t.Logf("events %v, %d looks", got, api.count())
	if !lastFinal(log) {
		t.Fatalf("no final event within an hour of a 2-minute maxAge: %v", got)
	}
	if want := "InProgress<-InProgress final=true"; got[len(got)-1] != want {
		t.Errorf("events %v: the final event is %s, want %s", got, got[len(got)-1], want)
	}
}

// trackingSeen is contoso's tracker over store, reading api: a first look
// after a minute, then the interval doubled up to an hour, until maxAge.
// Its events go out through publish, which answers for NATS: a test
// loses or refuses an event there, where a replica meets it.
func trackingSeen(store trackStore, api actionReader, clock clockwork.Clock, maxAge time.Duration,
	publish func(ctx context.Context, subject, msgID string, data []byte) error) *tracker {
	return newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(maxAge)},
		publish: publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
}

// ackLostOnce publishes to log, and answers the first publish of each of
// msgIDs with a timeout: the event is stored, but its acknowledgement is
// lost (NATS slow a moment, or the replica stopped before the state was
// written), so the tracker cannot tell it went out.
func ackLostOnce(log *eventLog, msgIDs ...string) func(ctx context.Context, subject, msgID string, data []byte) error {
	var mu sync.Mutex
	toLose := make(map[string]bool, len(msgIDs))
	for _, id := range msgIDs {
		toLose[id] = true
	}
	return func(ctx context.Context, subject, msgID string, data []byte) error {
		if err := log.publish(ctx, subject, msgID, data); err != nil {
			return err
		}
		mu.Lock()
		lost := toLose[msgID]
		delete(toLose, msgID)
		mu.Unlock()
		if lost {
			return errors.New("nats: timeout") // stored, its acknowledgement lost
		}
		return nil
	}
}

// firstLookInProgress waits for tr to hold its one action, then moves the
// clock to the first look, a minute on, and waits for the InProgress event
// it publishes: the end that follows then comes after InProgress was seen,
// whatever the clock does next.
func firstLookInProgress(t *testing.T, tr *tracker, clock *clockwork.FakeClock, log *eventLog) {
	t.Helper()
	waitFor(t, "the action held", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.queue) == 1
	})
	testwait.Waiters(t, clock, 1)
	clock.Advance(time.Minute) // the first look: InProgress
	waitFor(t, "the InProgress event", func() bool { return len(log.all()) == 2 })
}

// untilFinal moves the clock on in steps of 10 s, each once the tracker
// waits, until the last event in log is final or an hour has gone since
// start. Steps that short keep an end due at maxAge before a look due
// later, as real time would.
func untilFinal(t *testing.T, clock *clockwork.FakeClock, log *eventLog, start time.Time) {
	t.Helper()
	for !lastFinal(log) && clock.Since(start) < time.Hour {
		testwait.Waiters(t, clock, 1)
		clock.Advance(10 * time.Second)
	}
}

// lastFinal says whether the last event in log is final: the tracking
// has ended, whatever came before.
func lastFinal(log *eventLog) bool {
	events := log.all()
	return len(events) > 0 && events[len(events)-1].Final
}

// statusChanges writes events as Status<-PreviousStatus final=..., one a
// string, so that a test compares them and prints them whole.
func statusChanges(events []ActionEvent) []string {
	var got []string
	for _, ev := range events {
		got = append(got, fmt.Sprintf("%s<-%s final=%v", ev.Status, ev.PreviousStatus, ev.Final))
	}
	return got
}
