package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// TestWaiterTakesItsSpreadTokenBeforeAFetchedRequest is
// TestWaiterTakesItsPlaceBeforeAFetchedRequest with spreading on
// (spreadBurst), where the windows have room and the token bucket sets
// the pace: the token a waiter in Acquire waits for is its place, as a
// window's place would be. Counted free by the loop, it was fetched for
// and taken by the request that came after the waiter.
func TestWaiterTakesItsSpreadTokenBeforeAFetchedRequest(t *testing.T) {
	t.Parallel()
	const rounds = 300
	offered, taken := 0, 0
	for range rounds {
		clock := clockwork.NewFakeClockAt(epoch)
		// One token every 600 ms, one at most at once.
		l := NewTenant(clock).AddSpread("offboard", []Window{{Count: 100, Length: time.Minute}}, 1)
		first, _ := l.TryAcquire(epoch) // takes the token
		first.Complete(epoch)
		clock.Advance(500 * time.Millisecond)
		waiter := make(chan *Permit, 1)
		go func() {
			p, err := l.Acquire(t.Context())
			if err != nil {
				p = nil
			}
			waiter <- p
		}()
		testwait.Waiters(t, clock, 1)
		clock.Advance(91 * time.Millisecond) // the loop looks 10 ms ahead of the next token
		if l.AvailableWithin(clock.Now(), 10*time.Millisecond, 4) != 0 {
			offered++
		}
		clock.Advance(10 * time.Millisecond) // the token is there, the waiter is woken
		if q, _ := l.TryAcquireAhead(clock.Now(), 5*time.Millisecond); q != nil {
			taken++
			q.Release() // its token spent all the same: the waiter has the next
			testwait.Waiters(t, clock, 1)
			clock.Advance(time.Second)
		}
		p := testwait.For(t, waiter, 10*time.Second, "the waiter's permit")
		if p == nil {
			t.Fatal("the waiter got no permit")
		}
		p.Release()
	}
	if offered > 0 || taken > 0 {
		t.Errorf("of %d rounds: the waiter's token offered to the loop's fetch in %d, taken by a request that came after it in %d",
			rounds, offered, taken)
	}
}
