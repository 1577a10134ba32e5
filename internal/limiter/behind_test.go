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

// TestWaiterBehindKeepsItsPlaceAmongBulk: a bulk request waits behind for
// its permit (a retry after a 5xx) while its campaign's bulk requests
// keep being fetched. A bulk request fetched after it takes no place it
// waits for (AcquireAheadBehind), and a later bulk waiter none either:
// the first waiter has the next place. Before, every bulk request
// fetched took the place first, and the waiter waited for as long as the
// campaign's backlog lasted. A normal request still comes first.
func TestWaiterBehindKeepsItsPlaceAmongBulk(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	l := NewTenant(clock).Add("offboard", []Window{{Count: 1, Length: time.Second}})
	first, _ := l.TryAcquire(epoch)
	first.Complete(epoch) // its place frees at +1s
	waiter := func() chan *Permit {
		got := make(chan *Permit, 1)
		go func() {
			p, err := l.AcquireBehind(t.Context())
			if err != nil {
				p = nil
			}
			got <- p
		}()
		return got
	}
	earlier := waiter()
	testwait.Waiters(t, clock, 1)
	clock.Advance(995 * time.Millisecond) // the loop takes a permit 5 ms ahead
	if p := l.AcquireAheadBehind(t.Context(), 10*time.Millisecond, 5*time.Millisecond); p != nil {
		t.Fatalf("a bulk request fetched after a bulk one waiting took its place (at +%v)", p.NotBefore().Sub(epoch))
	}
	later := waiter()
	// The later one waits for no time (the place after the earlier
	// one's is not known yet): its turn in the line says it waits.
	for deadline := time.Now().Add(10 * time.Second); l.waitingBehind() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the later bulk waiter does not wait within 10 s")
		}
	}

	clock.Advance(5 * time.Millisecond) // +1s: the place frees
	if q, _ := l.TryAcquireBehind(clock.Now()); q != nil {
		t.Fatal("a bulk request's TryAcquireBehind took the place a bulk waiter waits for")
	}
	p := testwait.For(t, earlier, 10*time.Second, "the earlier bulk waiter's permit")
	if p == nil {
		t.Fatal("the earlier bulk waiter had no permit")
	}
	select {
	case q := <-later:
		t.Fatalf("the later bulk waiter had a permit beside the earlier one's (%v)", q != nil)
	case <-time.After(50 * time.Millisecond):
	}
	p.Complete(clock.Now()) // the next place frees at +2s

	// A normal request fetched now takes the next place before the later
	// bulk waiter: bulk never delays normal.
	clock.Advance(995 * time.Millisecond)
	normal, _ := l.TryAcquireAhead(clock.Now(), 5*time.Millisecond)
	if normal == nil {
		t.Fatal("a normal request fetched while a bulk one waits had no permit for the place freeing")
	}
	normal.Complete(normal.NotBefore()) // the next place frees at +3s
	clock.Advance(995 * time.Millisecond)
	if q := l.AcquireAheadBehind(t.Context(), 10*time.Millisecond, 5*time.Millisecond); q != nil {
		t.Fatalf("a bulk request fetched took the later bulk waiter's place (at +%v)", q.NotBefore().Sub(epoch))
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		clock.Advance(time.Millisecond)
		select {
		case q := <-later:
			if q == nil {
				t.Fatal("the later bulk waiter had no permit")
			}
			if at := clock.Now().Sub(epoch); at < 3*time.Second {
				t.Errorf("the later bulk waiter's permit at +%v, before the normal request's place", at)
			}
			return
		case <-time.After(time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the later bulk waiter had no permit within 10 s")
			}
		}
	}
}

// waitingBehind is how many callers wait in AcquireBehind.
func (l *Limiter) waitingBehind() int {
	l.tenant.mu.Lock()
	defer l.tenant.mu.Unlock()
	return len(l.behind)
}
