package worker

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// resume lifts a pause the switchboard set.
func (s *switchboard) resume(tenant string, p offboard.Priority) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.paused, tenant+"/"+string(p))
	close(s.changed)
	s.changed = make(chan struct{})
}

// onReserve is a quota or budget journal that runs hook once, as the
// first call or slot is entered in it.
type onReserve struct {
	limiter.Journal
	hook func()
	once sync.Once
}

func (j *onReserve) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	seq, err := j.Journal.Append(ctx, tenant, ev, last)
	if err == nil && len(ev.Reserved) > 0 {
		j.once.Do(j.hook)
	}
	return seq, err
}

// setupLeaving is a worker of a named process ("w-1", so that its own
// "calling" entries are not taken for a call under way elsewhere) whose
// pauses the returned switchboard sets, with ActionShowsWithin an hour:
// the fake clock may be driven while a redelivery looks for an action.
// reserved, if set, runs as the first offboard call is entered in the
// shared quota journal: between the request's "calling" entry and its
// first attempt.
func setupLeaving(t *testing.T, retry RetryPolicy, reserved func(*switchboard)) (*loopEnv, *switchboard) {
	t.Helper()
	board := newSwitchboard()
	var quota *limiter.Shared
	e := setupLoopOpts(t, `["100/1m"]`, "", retry, func(o *Options) {
		o.Control, o.Presence, o.ActionShowsWithin = board, marked{instance: "w-1"}, time.Hour
		if reserved == nil {
			return
		}
		qj, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		hooked := &onReserve{Journal: qj, hook: func() { reserved(board) }}
		quota = limiter.NewShared(limiter.SharedOptions{Journal: hooked, Clock: o.Clock, Lease: time.Minute,
			Margin: time.Second, Wall: clockwork.NewRealClock()})
		followJournal(t, o.JS, o.Settings.Subjects, quota, false)
		o.Shared = quota
	})
	return e, board
}

// busy says whether the worker has a request in its hands.
func (e *loopEnv) busy() bool {
	busy := false
	e.w.tenants["contoso"].working.Range(func(any, any) bool { busy = true; return false })
	return busy
}

// waitLeft waits until the worker has no request in its hands: the one
// it took left for redelivery. step, if not zero, advances the fake
// clock by that much every 5 ms meanwhile (a backoff, a pause to end).
func (e *loopEnv) waitLeft(t *testing.T, step time.Duration) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for e.busy() {
		if time.Now().After(deadline) {
			t.Fatal("the request did not leave the worker")
		}
		if step > 0 {
			e.clock.Advance(step)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cancelSeen cancels campaign name and waits until the worker knows of
// it for request id, stored before.
func (e *loopEnv) cancelSeen(t *testing.T, name, id string) {
	t.Helper()
	stored := time.Now()
	e.cancelCampaign(t, name)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := e.w.campaigns.Cancelled("contoso", offboard.Request{RequestID: id}, stored); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker does not see campaign %s cancelled", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resultDriven waits for the next result, driving the fake clock a
// second every 10 ms meanwhile (backoffs of a look for an action): the
// nak's delay, 5 s of real time, stays well within ActionShowsWithin.
func (e *loopEnv) resultDriven(t *testing.T) offboard.Result {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case r := <-e.results:
			return r
		case <-tick.C:
			e.clock.Advance(time.Second)
		case <-deadline:
			t.Fatal("no result")
		}
	}
}

// entryState is the state of the request id's ledger entry.
func (e *loopEnv) entryState(t *testing.T, id string) string {
	t.Helper()
	entry, err := e.w.opts.Ledger.Get(t.Context(), "contoso", id)
	if err != nil || entry == nil {
		t.Fatalf("ledger entry of %s: %v, %v", id, entry, err)
	}
	return entry.State
}

// TestCancelAppliesToARequestLeftBeforeItsFirstAttempt: a campaign's
// request wrote its "calling" entry, and an operator's pause, set while
// its call was entered in the quota journal, sent it back to the stream
// before any attempt went out (beforeAttempt). Its campaign is cancelled
// meanwhile. Taken again after the resume, it is answered cancelled with
// no offboard call: no call of it went out, and its entry, written back
// as its claim, says so. Before, the redelivery read its own "calling"
// entry as a call that may have gone out, skipped the cancel for
// ActionShowsWithin, looked for an action and offboarded the device.
func TestCancelAppliesToARequestLeftBeforeItsFirstAttempt(t *testing.T) {
	t.Parallel()
	paused := make(chan struct{})
	e, board := setupLeaving(t, RetryPolicy{Base: time.Second, Max: time.Second}, func(b *switchboard) {
		b.pause("contoso", offboard.Bulk)
		close(paused)
	})
	id := campaign.RequestID("wave1", 1)
	e.publishPrio(t, id, offboard.Bulk)
	select {
	case <-paused:
	case <-time.After(20 * time.Second):
		t.Fatal("the request's call was not entered in the quota journal")
	}
	e.waitLeft(t, 0)
	if n := e.offboardCalls(); n != 0 {
		t.Fatalf("%d offboard calls before the pause took effect, want none", n)
	}
	if st := e.entryState(t, id); st != queue.StateClaimed {
		t.Errorf("ledger entry %q after the request left before its first attempt, want %q", st, queue.StateClaimed)
	}
	e.cancelSeen(t, "wave1", id)
	board.resume("contoso", offboard.Bulk)
	r := e.resultDriven(t)
	if r.RequestID != id || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
		t.Errorf("result %s %s %+v, want %s failed cancelled", r.RequestID, r.Outcome, r.Error, id)
	}
	if n := e.offboardCalls(); n != 0 {
		t.Errorf("%d offboard calls, want none: no call of the request went out before the cancel", n)
	}
}

// TestCancelAfterTheFirstAttempt: a campaign's request whose first
// attempt went out, and that an operator's pause then sent back to the
// stream, its campaign cancelled meanwhile:
//   - answered 503, the attempt may have created the action: the request
//     keeps its "calling" entry, and its redelivery looks for the action;
//     none shown by ActionShowsWithin after the attempt, it is answered
//     cancelled with no other call. Before, it called again after the
//     cancel, and offboarded the device of a cancelled campaign;
//   - answered 429, the API turned it away before acting: its entry,
//     written back as its claim, says no call of it went out, and it is
//     answered cancelled with no other call. Before, its "calling" entry
//     stood, and its redelivery looked for an action and called.
func TestCancelAfterTheFirstAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		state  string // the ledger entry's, once the request left
		cancel bool   // answered cancelled, the first attempt its only call
	}{
		{"503", http.StatusServiceUnavailable, queue.StateCalling, true},
		{"429", http.StatusTooManyRequests, queue.StateClaimed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, board := setupLeaving(t, RetryPolicy{Base: time.Minute, Max: time.Minute}, nil)
			e.sim.InjectStatus(loopTenantID, mde.APIOffboard, tc.status, "", "", 1, time.Minute)
			id := campaign.RequestID("wave1", 1)
			e.publishPrio(t, id, offboard.Bulk)
			e.waitForCalls(t, mde.APIOffboard, 1)
			board.pause("contoso", offboard.Bulk)
			// Its backoff or the 429's pause, and the look for the
			// attempt's action, end on the fake clock; the next attempt
			// meets the operator's pause.
			e.waitLeft(t, time.Second)
			if n := e.offboardCalls(); n != 1 {
				t.Fatalf("%d offboard calls before the pause took effect, want 1", n)
			}
			if st := e.entryState(t, id); st != tc.state {
				t.Errorf("ledger entry %q after the request left after a %d, want %q", st, tc.status, tc.state)
			}
			e.cancelSeen(t, "wave1", id)
			// Past the time the 503's action would take to show: taken
			// again within it, the request would only look and leave.
			e.clock.Advance(time.Hour + time.Minute)
			board.resume("contoso", offboard.Bulk)
			r := e.resultDriven(t)
			cancelled := r.RequestID == id && r.Error != nil && r.Error.Code == offboard.CodeCancelled
			created := r.RequestID == id && r.Outcome == offboard.OutcomeCreated
			switch {
			case tc.cancel && (!cancelled || e.offboardCalls() != 1):
				t.Errorf("result %s %s %+v after %d offboard calls, want %s cancelled with only the %d", r.RequestID, r.Outcome, r.Error, e.offboardCalls(), id, tc.status)
			case !tc.cancel && !created:
				t.Errorf("result %s %s %+v, want %s created: its earlier attempt may have acted, so the cancel does not apply", r.RequestID, r.Outcome, r.Error, id)
			case cancelled && (tc.state == queue.StateCalling) != strings.Contains(r.Error.Message, "before the cancel created no action"):
				// After a 503 a call went out: the message says so, not
				// that the cancel came before the call.
				t.Errorf("cancelled after a %d: message %q", tc.status, r.Error.Message)
			}
		})
	}
}

// offboardCalls is how many offboard calls the simulator answered.
func (e *loopEnv) offboardCalls() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.API == mde.APIOffboard {
			n++
		}
	}
	return n
}

// TestCallingBackToClaimOnlyWithoutACall: a request leaving writes its
// "calling" entry back as its claim only when this delivery wrote it, as
// this process, for this message, and no call of the request may have
// gone out: none of its attempts sent, none of an earlier delivery or
// process (calledBefore), whose entry must stand. An entry changed
// meanwhile is left as it is.
func TestCallingBackToClaimOnlyWithoutACall(t *testing.T) {
	t.Parallel()
	e, _ := setupLeaving(t, RetryPolicy{}, nil)
	tr := e.w.tenants["contoso"]
	for i, c := range []struct {
		name   string
		change func(j *job, own *queue.Entry)
		want   string
	}{
		{"no call sent", func(*job, *queue.Entry) {}, queue.StateClaimed},
		{"an attempt sent", func(j *job, _ *queue.Entry) { j.attempts = 1 }, queue.StateCalling},
		{"attempts all answered 429", func(j *job, _ *queue.Entry) { j.attempts, j.throttled = 2, 2 }, queue.StateClaimed},
		{"a 429 and another attempt", func(j *job, _ *queue.Entry) { j.attempts, j.throttled = 2, 1 }, queue.StateCalling},
		{"an attempt that may have acted", func(j *job, _ *queue.Entry) { j.mayHaveActed = true }, queue.StateCalling},
		{"an earlier delivery's call", func(j *job, own *queue.Entry) { j.earlierCall = own.Started.Add(-time.Minute) }, queue.StateCalling},
		{"an entry read, not written", func(j *job, _ *queue.Entry) { j.wroteCalling = false }, queue.StateCalling},
		{"another process's entry", func(_ *job, own *queue.Entry) { own.Writer = "w-2" }, queue.StateCalling},
		{"another message's entry", func(j *job, _ *queue.Entry) { j.seq++ }, queue.StateCalling},
		{"the entry changed meanwhile", func(j *job, own *queue.Entry) {
			next := *own
			if err := e.w.opts.Ledger.Put(t.Context(), "contoso", j.req.RequestID, own, &next); err != nil {
				t.Fatal(err)
			}
		}, queue.StateCalling},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := &job{t: tr, seq: 7, log: tr.log, req: offboard.Request{RequestID: "r-" + strconv.Itoa(i), MachineID: loopMachine}}
			own := j.entryNow(queue.StateCalling, e.clock.Now(), "w-1")
			if err := e.w.opts.Ledger.Put(t.Context(), "contoso", j.req.RequestID, nil, own); err != nil {
				t.Fatal(err)
			}
			j.entry, j.wroteCalling = own, true
			c.change(j, own)
			e.w.callingBackToClaim(j)
			if st := e.entryState(t, j.req.RequestID); st != c.want {
				t.Errorf("ledger entry %q, want %q", st, c.want)
			}
		})
	}
}
