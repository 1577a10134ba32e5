package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// TestWaiterTakesItsPlaceBeforeAFetchedRequest: a request waits in
// Acquire for the next place (a retry after a 5xx, say). 10 ms before
// that place frees, the tenant's loop asks how many places free by then
// (AvailableWithin) to fetch requests for them, and the fetched
// request's permit is asked for as the place frees (AcquireAhead, whose
// timer fires with the waiter's). The place is the waiter's: it came
// first. Before, the loop fetched a request for it in every round, and
// that request took it, the waiter woken but not run yet, in most
// rounds; the waiter then waited for the next place, for which the loop
// had fetched another request by then: a normal request's retry waited
// behind the tenant's whole bulk backlog.
func TestWaiterTakesItsPlaceBeforeAFetchedRequest(t *testing.T) {
	t.Parallel()
	const rounds = 300
	offered, taken := 0, 0
	for range rounds {
		clock := clockwork.NewFakeClockAt(epoch)
		l := NewTenant(clock).Add("offboard", []Window{{Count: 1, Length: time.Second}})
		first, _ := l.TryAcquire(epoch)
		first.Complete(epoch) // its place frees at +1s
		clock.Advance(900 * time.Millisecond)
		waiter := make(chan *Permit, 1)
		go func() {
			p, err := l.Acquire(t.Context())
			if err != nil {
				p = nil
			}
			waiter <- p
		}()
		testwait.Waiters(t, clock, 1)
		clock.Advance(90 * time.Millisecond) // +990ms: the loop looks 10 ms ahead
		if l.AvailableWithin(clock.Now(), 10*time.Millisecond, 4) != 0 {
			offered++
		}
		clock.Advance(10 * time.Millisecond) // +1s: the place frees, the waiter is woken
		if q, _ := l.TryAcquireAhead(clock.Now(), 5*time.Millisecond); q != nil {
			taken++
			q.Release() // the waiter has it, late
		}
		p := testwait.For(t, waiter, 10*time.Second, "the waiter's permit")
		if p == nil {
			t.Fatal("the waiter got no permit")
		}
		p.Release()
	}
	if offered > 0 || taken > 0 {
		t.Errorf("of %d rounds: the waiter's place offered to the loop's fetch in %d, taken by a request that came after it in %d",
			rounds, offered, taken)
	}
}
