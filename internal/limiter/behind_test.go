package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// TestWaiterBehindKeepsNoPlace: a bulk request waits for the next place
// (a retry after a 5xx) while a normal request is published. Bulk never
// delays normal (CONTRACT.md, "Isolation"): the bulk request waits
// behind (AcquireBehind), so the tenant's loop fetches the normal
// request for that place and its permit takes it; the bulk request has
// the next one. A normal request waiting in Acquire keeps its place from
// a bulk one waiting behind just the same.
func TestWaiterBehindKeepsNoPlace(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	l := NewTenant(clock).Add("offboard", []Window{{Count: 1, Length: time.Second}})
	first, _ := l.TryAcquire(epoch)
	first.Complete(epoch) // its place frees at +1s
	clock.Advance(900 * time.Millisecond)
	bulk := make(chan *Permit, 1)
	go func() {
		p, err := l.AcquireBehind(t.Context())
		if err != nil {
			p = nil
		}
		bulk <- p
	}()
	testwait.Waiters(t, clock, 1)
	clock.Advance(90 * time.Millisecond) // +990ms: the loop looks 10 ms ahead
	if n := l.AvailableWithin(clock.Now(), 10*time.Millisecond, 4); n != 1 {
		t.Errorf("the loop may fetch %d requests for the place a bulk request waits behind for, want 1", n)
	}
	normal, _ := l.TryAcquireAhead(clock.Now(), 10*time.Millisecond)
	if normal == nil {
		t.Fatal("a normal request fetched after a bulk one waiting behind had no permit for the place freeing")
	}
	normal.Complete(normal.NotBefore()) // its call: the next place frees at +2s
	select {
	case p := <-bulk:
		t.Fatalf("the bulk request had a permit at +1s beside the normal one's (%v)", p != nil)
	default:
	}

	// A normal request now waits in Acquire; the bulk one waits behind
	// it: the place freeing at +2s is the normal one's.
	waiting := make(chan *Permit, 1)
	go func() {
		p, err := l.Acquire(t.Context())
		if err != nil {
			p = nil
		}
		waiting <- p
	}()
	testwait.Waiters(t, clock, 2)
	clock.Advance(time.Second) // +1.99s
	clock.Advance(10 * time.Millisecond)
	p := testwait.For(t, waiting, 10*time.Second, "the waiting normal request's permit")
	if p == nil {
		t.Fatal("the waiting normal request had no permit")
	}
	p.Complete(clock.Now()) // the next place frees at +3s
	select {
	case q := <-bulk:
		t.Fatalf("the bulk request waiting behind took a place too (%v)", q != nil)
	case <-time.After(50 * time.Millisecond):
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		clock.Advance(100 * time.Millisecond)
		select {
		case q := <-bulk:
			if q == nil {
				t.Fatal("the bulk request had no permit")
			}
			if at := clock.Now().Sub(epoch); at < 3*time.Second {
				t.Errorf("the bulk request's permit at +%v, before the place after the normal ones", at)
			}
			return
		case <-time.After(time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the bulk request waiting behind had no permit within 10 s")
			}
		}
	}
}
