package worker

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelWhileHeld: a campaign cancelled while its requests wait in
// the stream, held by the tenant's budget spent, or by a 429 whose
// Retry-After is an hour, has them answered cancelled within seconds,
// with no call; another campaign's request keeps waiting, and once the
// hold is over it is called, and nothing more.
func TestCancelWhileHeld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		extra string
		hold  func(e *loopEnv, t *testing.T) // spends what holds the tenant
		lift  func(e *loopEnv, t *testing.T) // ends the hold
		calls int                            // offboard calls before the lift
		after int                            // and after
	}{
		{
			name:  "budget spent",
			extra: "    guards:\n      budget: \"1/1h\"\n",
			hold: func(e *loopEnv, t *testing.T) {
				e.publish(t, "r-1")
				e.wantCreated(t, "r-1")
			},
			lift: func(e *loopEnv, t *testing.T) {
				if r := e.resultOnceTheQuotaFrees(t, "wave2's row"); r.RequestID != campaign.RequestID("wave2", 1) || r.Outcome != offboard.OutcomeCreated {
					t.Errorf("result %s %s %+v once the budget freed, want wave2's row created", r.RequestID, r.Outcome, r.Error)
				}
			},
			calls: 1, after: 2,
		},
		{
			name: "429 for an hour",
			hold: func(e *loopEnv, t *testing.T) {
				e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "429", "API calls quota exceeded!", 1, time.Hour)
				e.publish(t, "r-1") // answered 429: the tenant waits an hour
				e.waitForCalls(t, mde.APIOffboard, 1)
			},
			lift: func(e *loopEnv, t *testing.T) {
				got := map[string]bool{}
				for range 2 {
					r := e.resultOnceTheQuotaFrees(t, "r-1 or wave2's row")
					if r.Outcome != offboard.OutcomeCreated {
						t.Errorf("result %s %s %+v once the 429's hour is over, want created", r.RequestID, r.Outcome, r.Error)
					}
					got[r.RequestID] = true
				}
				if !got["r-1"] || !got[campaign.RequestID("wave2", 1)] {
					t.Errorf("created once the 429's hour is over: %v, want r-1 and wave2's row", got)
				}
			},
			calls: 1, after: 3, // r-1 called again
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setupLoopWith(t, `["100/1m"]`, tc.extra, RetryPolicy{})
			tc.hold(e, t)
			want := e.publishRows(t, "wave1", 3, offboard.Bulk)
			e.publishPrio(t, campaign.RequestID("wave2", 1), offboard.Bulk)
			time.Sleep(300 * time.Millisecond)
			e.cancelCampaign(t, "wave1")
			cancelled := time.Now()
			e.wantCancelled(t, want)
			if d := time.Since(cancelled); d > 5*time.Second {
				t.Errorf("answered cancelled %v after the cancel, want within seconds", d.Round(100*time.Millisecond))
			}
			if n := e.offboardCalls(); n != tc.calls {
				t.Errorf("%d offboard calls, want %d", n, tc.calls)
			}
			tc.lift(e, t)
			e.clock.Advance(2 * time.Hour)
			e.noResultFor(t, "after the hold: a cancelled row answered twice")
			if n := e.offboardCalls(); n != tc.after {
				t.Errorf("%d offboard calls, want %d", n, tc.after)
			}
		})
	}
}

// TestCancelWhilePausedAndStopped: a campaign cancelled while the worker
// was down and its tenant paused has its requests answered cancelled as
// the worker starts, the pause holding: no call; a single request keeps
// waiting for the resume.
func TestCancelWhilePausedAndStopped(t *testing.T) {
	t.Parallel()
	var watcher *control.Watcher
	follow := followControls(t, &watcher)
	want := map[string]bool{}
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		store, err := control.Open(t.Context(), o.JS, offboard.Subjects{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: control.PriorityAll, By: "test"}); err != nil {
			t.Fatal(err)
		}
		publish := func(id string, prio offboard.Priority) {
			data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": loopMachine})
			m := nats.NewMsg(offboard.Subjects{}.Request("contoso", prio))
			m.Data = data
			m.Header.Set(jetstream.MsgIDHeader, "contoso:"+id)
			if _, err := o.JS.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
		publish("single-1", offboard.Normal)
		for i := range 3 {
			id := campaign.RequestID("wave1", i+1)
			publish(id, offboard.Bulk)
			want[id] = true
		}
		kv, err := campaign.ControlBucket(t.Context(), o.JS)
		if err != nil {
			t.Fatal(err)
		}
		if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		follow(o)
	})
	started := time.Now()
	e.wantCancelled(t, want)
	if d := time.Since(started); d > 5*time.Second {
		t.Errorf("answered cancelled %v after the start, want within seconds", d.Round(100*time.Millisecond))
	}
	e.noResultFor(t, "while paused")
	if n := e.offboardCalls(); n != 0 {
		t.Errorf("%d offboard calls while paused, want 0", n)
	}
	store, err := control.Open(t.Context(), e.js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionResume, Priority: control.PriorityAll, By: "test"}); err != nil {
		t.Fatal(err)
	}
	e.wantCreated(t, "single-1")
	if n := e.offboardCalls(); n != 1 {
		t.Errorf("%d offboard calls, want single-1's", n)
	}
}
