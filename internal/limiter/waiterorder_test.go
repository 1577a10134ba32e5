package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// waitersAt waits until n callers wait in l's Acquire.
func waitersAt(t *testing.T, l *Limiter, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.tenant.mu.Lock()
		got := len(l.waiting)
		l.tenant.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting in Acquire, not %d, within 10 s", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// endTogether ends calls under way as if their answers came in
// together: each as Complete does, under one hold of the tenant's lock,
// so that a waiter looks again once, at the state after all of them.
// Ended one by one, a waiter may look between two ends and set a timer
// it drops at the next: until it runs again the fake clock still counts
// that timer, a wait for the waiters' timers (testwait.Waiters) can end
// early, and a clock moved on then can come between the waiter's next
// look and its next timer, which then fires late by as much.
func endTogether(l *Limiter, ends map[*Permit]time.Time) {
	l.tenant.mu.Lock()
	defer l.tenant.mu.Unlock()
	for p, at := range ends {
		p.once.Do(func() {
			l.insertLocked(at)
			p.endLocked(at.UnixNano())
		})
	}
}

// TestEarlierWaiterTakesItsPlaceBeforeALaterOne: a request waits in
// Acquire for the next place (a retry after a 5xx); another comes to
// wait after it (a request whose place went elsewhere, another retry).
// As calls under way end, both look again for their places: the place
// that frees first is the first waiter's, and the later one must not
// make it its own too, to be taken by whichever of the two runs first
// as it frees.
func TestEarlierWaiterTakesItsPlaceBeforeALaterOne(t *testing.T) {
	t.Parallel()
	const rounds = 200
	lost := 0
	for range rounds {
		clock := clockwork.NewFakeClockAt(epoch)
		l := NewTenant(clock).Add("offboard", []Window{{Count: 2, Length: time.Second}})
		under1, _ := l.TryAcquire(epoch)
		under2, _ := l.TryAcquire(epoch) // two calls under way fill the window
		clock.Advance(900 * time.Millisecond)
		got := make(chan string, 2)
		acquire := func(name string) {
			p, err := l.Acquire(t.Context())
			if err == nil {
				p.Complete(clock.Now())
				got <- name
			}
		}
		go acquire("first")
		waitersAt(t, l, 1)
		go acquire("later")
		waitersAt(t, l, 2)
		// Their places free at +1.1s and +1.3s. Both waiters look
		// again once, and set the timers for them.
		endTogether(l, map[*Permit]time.Time{under1: epoch.Add(100 * time.Millisecond), under2: epoch.Add(300 * time.Millisecond)})
		testwait.Waiters(t, clock, 2)
		clock.Advance(200 * time.Millisecond) // +1.1s: the first waiter's place frees
		if testwait.For(t, got, 10*time.Second, "a waiter's permit") != "first" {
			lost++
		}
		// The later waiter looks again at each change (the first's
		// permit, its call's end), each time with a timer of its own:
		// the clock moves on until it has its permit.
		deadline := time.Now().Add(10 * time.Second)
		for done := false; !done; {
			clock.Advance(100 * time.Millisecond)
			select {
			case <-got:
				done = true
			case <-time.After(time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatal("the other waiter has no permit within 10s")
				}
			}
		}
	}
	if lost > 0 {
		t.Errorf("of %d rounds: the first waiter's place taken by the one that came to wait after it in %d", rounds, lost)
	}
}
