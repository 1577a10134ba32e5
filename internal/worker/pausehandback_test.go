package worker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// followControls has the worker follow the control bucket with a watcher
// of its own, read up to date before the worker starts.
func followControls(t *testing.T, watcher **control.Watcher) func(*Options) {
	t.Helper()
	return func(o *Options) {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := control.NewWatcher(ctx, o.JS, zap.NewNop())
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		waitCurrent(t, w)
		o.Control, *watcher = w, w
	}
}

// waitCurrent waits, 10 s at most, until w has read the controls.
func waitCurrent(t *testing.T, w *control.Watcher) {
	t.Helper()
	select {
	case <-w.Current():
	case <-time.After(10 * time.Second):
		t.Fatal("the controls were not read within 10 s")
	}
}

// TestControlHandsBackForItsUndoAtOnce: a request that meets an
// operator's control as its call would go out (after waiting out a 429)
// goes back to the stream ready to be taken again, not set aside for a
// delay: a resume, or the budget raised again, right after lets it go on
// at once, within the second a control takes, not once a delay ran out.
func TestControlHandsBackForItsUndoAtOnce(t *testing.T) {
	t.Parallel()
	pause := control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: control.PriorityAll, By: "test"}
	resume := control.Change{Tenant: "contoso", Action: control.ActionResume, Priority: control.PriorityAll, By: "test"}
	lower := control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "1/1h", By: "test"}
	raise := control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "100/1h", By: "test"}
	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		handedBackAtOnce(t, "", pause, resume)
	})
	// r-0 created and r-1 holding a slot of 100/1h: lowered to 1/1h,
	// r-1 gives its slot back.
	t.Run("budget lowered", func(t *testing.T) {
		t.Parallel()
		handedBackAtOnce(t, "    guards:\n      budget: \"100/1h\"\n", lower, raise)
	})
}

// handedBackAtOnce publishes r-0, created, then r-1, throttled for a
// minute; hold lands meanwhile, and r-1 must be back in the stream ready
// to be taken as soon as it left the worker; after lift, it is created.
func handedBackAtOnce(t *testing.T, extra string, hold, lift control.Change) {
	t.Helper()
	var watcher *control.Watcher
	e := setupLoopOpts(t, `["100/1m"]`, extra, RetryPolicy{Base: time.Second, Max: time.Second}, followControls(t, &watcher))
	store, err := control.Open(t.Context(), e.js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	const other = "2e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: other, ComputerDNSName: "pc-2.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
	e.publish(t, "r-0")
	e.wantCreated(t, "r-0")
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "429", "API calls quota exceeded!", 1, time.Minute)
	e.publishFor(t, "r-1", other)
	deadline := time.Now().Add(20 * time.Second)
	for e.offboardCalls() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("r-1 was not called")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := store.Apply(t.Context(), hold); err != nil {
		t.Fatal(err)
	}
	for !inForce(e, watcher, hold) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not in force", hold.Action)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.waitLeft(t, 10*time.Second) // the 429's minute ends: r-1 meets the control
	if n := e.offboardCalls(); n != 2 {
		t.Fatalf("%d offboard calls, want r-0's and r-1's throttled one: %s holds r-1", n, hold.Action)
	}
	cons, err := e.js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(1)
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 1 {
		t.Fatalf("%d requests ready in the stream as r-1 left for %s, want 1: undone now, it would wait out a delay", len(got), hold.Action)
	}
	if err := got[0].Nak(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(t.Context(), lift); err != nil {
		t.Fatal(err)
	}
	e.wantCreated(t, "r-1")
}

// inForce says whether the worker applies the control change c.
func inForce(e *loopEnv, watcher *control.Watcher, c control.Change) bool {
	if c.Action == control.ActionPause {
		return watcher.Paused(c.Tenant, offboard.Normal) && watcher.Paused(c.Tenant, offboard.Bulk)
	}
	w, ok := e.w.tenants[c.Tenant].budget.window()
	return ok && w.Spec() == c.Value
}
