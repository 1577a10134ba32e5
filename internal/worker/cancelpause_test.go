package worker

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelWhilePaused: an operator pauses a tenant whose campaign went
// wrong, then cancels the campaign. Its requests waiting in the stream are
// answered cancelled within seconds while the pause holds, with no call
// and no place of the quota taken; the other campaign's request and a
// single request keep waiting, and a resume has them called, and nothing
// more. Before, the loop looked at no cancel while every priority it
// serves was paused, and pulled only the priorities not paused: the
// cancelled requests were answered only after the resume.
func TestCancelWhilePaused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		paused   string            // the pause's priority
		campaign offboard.Priority // the campaign's
	}{
		{control.PriorityAll, offboard.Bulk},
		{string(offboard.Bulk), offboard.Bulk},
		{string(offboard.Normal), offboard.Normal},
	} {
		t.Run(tc.paused, func(t *testing.T) {
			t.Parallel()
			var watcher *control.Watcher
			e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, followControls(t, &watcher))
			store, err := control.Open(t.Context(), e.js, offboard.Subjects{})
			if err != nil {
				t.Fatal(err)
			}
			pause := control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: tc.paused, By: "test"}
			if _, err := store.Apply(t.Context(), pause); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); !watcher.Paused("contoso", tc.campaign); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the pause is not in force")
				}
			}
			want := e.publishRows(t, "wave1", 3, tc.campaign)
			e.publishPrio(t, campaign.RequestID("wave2", 1), tc.campaign)
			e.publishPrio(t, "single-1", tc.campaign)
			time.Sleep(300 * time.Millisecond)
			e.cancelCampaign(t, "wave1")
			cancelled := time.Now()
			e.wantCancelled(t, want)
			if d := time.Since(cancelled); d > 5*time.Second {
				t.Errorf("answered cancelled %v after the cancel, want within seconds", d.Round(100*time.Millisecond))
			}
			e.noResultFor(t, "while paused")
			if n := e.offboardCalls(); n != 0 {
				t.Errorf("%d offboard calls while paused, want 0", n)
			}
			if n := e.w.tenants["contoso"].limits.API(mde.APIOffboard).Remaining(e.clock.Now())[0]; n != 100 {
				t.Errorf("%d calls left in the minute, want 100: a cancelled request took a place", n)
			}
			resume := control.Change{Tenant: "contoso", Action: control.ActionResume, Priority: tc.paused, By: "test"}
			if _, err := store.Apply(t.Context(), resume); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for range 2 {
				r := e.nextResult(t, "wave2's row or single-1")
				if r.Outcome != offboard.OutcomeCreated {
					t.Fatalf("result %s %s %+v after the resume, want created", r.RequestID, r.Outcome, r.Error)
				}
				got[r.RequestID] = true
			}
			if !got[campaign.RequestID("wave2", 1)] || !got["single-1"] {
				t.Errorf("created after the resume: %v, want wave2's row and single-1", got)
			}
			e.noResultFor(t, "after the resume: the cancelled rows were answered")
			if n := e.offboardCalls(); n != 2 {
				t.Errorf("%d offboard calls, want 2 (%s)", n, fmt.Sprint(got))
			}
		})
	}
}

// TestCancelWhilePausedAfterA5xx: a campaign's request whose call was
// answered 503 waits out its backoff when an operator pauses its
// priority, then its campaign is cancelled: it leaves for the stream
// until the call's action would show (ActionShowsWithin), and, taken
// again while the pause holds, one look for the action settles it:
// answered cancelled, no call after the cancel.
func TestCancelWhilePausedAfterA5xx(t *testing.T) {
	t.Parallel()
	board := newSwitchboard()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{Base: time.Second, Max: time.Second}, func(o *Options) {
		o.Control, o.Presence, o.ActionShowsWithin = board, marked{instance: "w-1"}, 2*time.Second
	})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
	id := campaign.RequestID("wave1", 1)
	e.publishPrio(t, id, offboard.Bulk)
	e.waitForCalls(t, mde.APIOffboard, 1)
	board.pause("contoso", offboard.Bulk)
	e.cancelSeen(t, "wave1", id) // its backoff waits on the fake clock
	e.cancelledOnTheFakeClock(t, id, "bulk paused")
}
