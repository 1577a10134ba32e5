package worker

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStopEndsWaits: a request that waits for something other than this
// worker's work when the worker stops (a backoff after a 503, the machines
// quota paused by a 429 of an hour, another request on its device) goes back to the stream at once: the
// stop does not wait for it until its deadline, which would cancel it and
// report requests cancelled. The request stays stored, unanswered, for
// the next worker.
func TestStopEndsWaits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// arrange sets the API up, publishes the request and returns once
		// the request waits.
		arrange func(t *testing.T, e *loopEnv)
		stored  uint64 // requests it leaves in the stream
	}{
		{"backoff after a 503", func(t *testing.T, e *loopEnv) {
			e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
			e.publish(t, "r-1")
			e.waitForCalls(t, mde.APIOffboard, 1)
		}, 1},
		{"the device locked by a request in its backoff", func(t *testing.T, e *loopEnv) {
			e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
			e.publish(t, "r-1")
			e.waitForCalls(t, mde.APIOffboard, 1)
			e.publish(t, "r-2")
		}, 2},
		{"a host name's lookup paused by a 429", func(t *testing.T, e *loopEnv) {
			e.sim.InjectStatus(loopTenantID, mde.APIMachines, http.StatusTooManyRequests, "", "", 1, time.Hour)
			e.publishRequest(t, "r-1", map[string]any{"computerDnsName": "pc-1.contoso.local"})
			e.waitForCalls(t, mde.APIMachines, 1)
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Backoffs of an hour, on a clock that stands still.
			e := setupLoop(t, `["100/1m"]`, RetryPolicy{Base: time.Hour, Max: time.Hour})
			tt.arrange(t, e)
			time.Sleep(200 * time.Millisecond) // the request is in its wait
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := e.w.Stop(ctx); err != nil {
				t.Errorf("Stop after %v: %v; want the waiting request back in the stream at once", time.Since(start).Round(time.Millisecond), err)
			}
			// r-1 waits until the stop; r-2, on a busy machine, may not wait
			// for r-1's device yet, find it free once r-1 let it go, and
			// call as any request under way (TestStopEndsAWaitItFrees
			// covers a wait the stop ends).
			answered := map[string]int{}
			collected := time.After(300 * time.Millisecond)
		collect:
			for {
				select {
				case r := <-e.results:
					answered[r.RequestID]++
				case <-collected:
					break collect
				}
			}
			if answered["r-1"] > 0 || answered["r-2"] > 1 {
				t.Errorf("results %v, want none for r-1 (back to the stream) and at most one for r-2", answered)
			}
			s, err := e.js.Stream(t.Context(), offboard.StreamRequests)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.stored - uint64(answered["r-2"]); info.State.Msgs != want {
				t.Errorf("request stream holds %d messages, want %d: the requests not answered still stored", info.State.Msgs, want)
			}
		})
	}
}

// waitForCalls waits until the simulator has answered n calls to api.
func (e *loopEnv) waitForCalls(t *testing.T, api string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := 0
		for _, c := range e.sim.Calls() {
			if c.API == api {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s calls, want %d", got, api, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStopEndsAWaitItFrees: a request waiting for its device when the
// worker stops goes back to the stream also when the stop frees the device
// before it ends the wait (the request on the device left at the stop, and
// unlocked it): no offboard call starts after the stop.
func TestStopEndsAWaitItFrees(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	devices := &e.w.tenants["contoso"].devices
	unlock, ok := devices.tryLock(loopMachine) // another request's
	if !ok {
		t.Fatal("device locked")
	}
	e.publish(t, "r-1")
	deadline := time.Now().Add(20 * time.Second)
	for waiting := false; !waiting; {
		devices.mu.Lock()
		waiting = devices.locks[loopMachine].refs == 2
		devices.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("r-1 does not wait for its device")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopFetch := e.w.stopFetch
	e.w.stopFetch = func() { stopFetch(); unlock() } // the stop frees the device
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.w.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	select {
	case r := <-e.results:
		t.Errorf("result %s %s %+v, want none: the request goes back to the stream", r.RequestID, r.Outcome, r.Error)
	default:
	}
	for _, c := range e.sim.Calls() {
		if c.API == mde.APIOffboard {
			t.Errorf("offboard call of %s after the stop, want none", c.MachineID)
		}
	}
}

// TestNoCallStartsAfterTheStopOnceEntered: a call's quota journal entry
// waited for room when the worker stopped taking requests, and the stop
// itself made the room (a request that left gave its place back) before
// it ended the wait: the entry is written, but the call does not go out,
// and its place comes back. Before, that one call went out after the stop.
func TestNoCallStartsAfterTheStopOnceEntered(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	lt := limiter.NewTenant(clock)
	l := lt.Add(mde.APIOffboard, []limiter.Window{{Count: 1, Length: time.Hour}})
	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	p, _ := l.TryAcquire(clock.Now())
	if p == nil {
		t.Fatal("no permit")
	}
	stop, stopTaking := context.WithCancel(context.Background())
	ctx := context.WithValue(t.Context(), stopKey{}, stop)
	enteredAtTheStop := func(context.Context, *limiter.Permit) (time.Time, error) {
		stopTaking()
		return time.Time{}, nil
	}
	sent := 0
	_, res, err := c.sendChecked(ctx, &tenantRun{name: "contoso", limits: lt}, mde.APIOffboard, p,
		func(context.Context) *mde.Verdict { sent++; return &mde.Verdict{Sent: true} },
		nil, enteredAtTheStop)
	if sent != 0 {
		t.Errorf("%d calls went out after the stop, want none", sent)
	}
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Errorf("sendChecked: result %+v, error %v; want none and the stop's (the request goes back to the stream)", res, err)
	}
	if q, _ := l.TryAcquire(clock.Now()); q == nil {
		t.Error("the call's place was not given back")
	}
}
