package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// lateActions answers looks with statuses in turn, as scriptedActions
// does; the look numbered late lasts (a 429's pause waited out, say)
// until the clock has moved on by wait.
type lateActions struct {
	scriptedActions
	late int
	wait time.Duration
}

func (l *lateActions) get(ctx context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	l.mu.Lock()
	n := len(l.all)
	l.mu.Unlock()
	if n+1 == l.late {
		l.clock.(*clockwork.FakeClock).Advance(l.wait)
	}
	return l.scriptedActions.get(ctx, p, id)
}

// TestTrackingGivenUpDuringALookIsPublished: a look that ends past the
// action's maxAge gives the tracking up, with a final event under the
// given-up message id (":ended") whatever status it read. Under the
// status's own message id, the final event of an action seen InProgress
// again (InProgress, Pending, InProgress) was dropped by the stream as a
// repeat of the first InProgress: no final event was ever stored.
func TestTrackingGivenUpDuringALookIsPublished(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &lateActions{late: 3, wait: 5 * time.Minute, scriptedActions: scriptedFor(clock, "InProgress", "Pending", "InProgress")}
	trackedToOneFinalEvent(t, clock, js, ledger, api)
}

// trackedToOneFinalEvent follows act-1 of contoso, Pending, with store
// and api on real JetStream (a first look after a minute, maxAge 10 min)
// until its tracking has ended, and checks that the stream holds one
// final event of it.
func trackedToOneFinalEvent(t *testing.T, clock *clockwork.FakeClock, js jetstream.JetStream, store trackStore, api actionReader) {
	t.Helper()
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: api, clock: clock, log: zap.NewNop(),
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

// storedActionEvents reads contoso's action events from the results
// stream: each as status(final, message id), and how many are final.
func storedActionEvents(t *testing.T, js jetstream.JetStream) (got []string, final int) {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{offboard.Subjects{}.Action("contoso")}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		var ev ActionEvent
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s(final=%v, %s)", ev.Status, ev.Final, m.Headers().Get(jetstream.MsgIDHeader)))
		if ev.Final {
			final++
		}
	}
	return got, final
}

// trackUntil moves the clock on in steps of 20 s, each once the tracker
// waits, until done says so: for an hour at most.
func trackUntil(t *testing.T, clock *clockwork.FakeClock, done func() bool) {
	t.Helper()
	for range 180 {
		if done() {
			return
		}
		testwait.Waiters(t, clock, 1)
		clock.Advance(20 * time.Second)
	}
	if !done() {
		t.Fatal("not within an hour on the tracker's clock")
	}
}
