package worker

import "sync"

// uncalledKept bounds the requests a tenant's leftUncalled holds: past it,
// the oldest notes are dropped, and the next delivery of a request noted
// so looks as if its entry were gone, which costs a read and errs on the
// safe side.
const uncalledKept = 4096

// leftUncalled notes the requests this process left, at a delivery, with
// no ledger entry written and so no call sent (a "calling" entry comes
// before every call): an outage that failed that entry's write, a stop
// before the call. Its next delivery finds no entry for its id, as one
// whose entry is gone after a call would (entryGone), and would read the
// tenant's results and list the device's actions before its call; noted
// here, it is known to be new. After a NATS outage every such request
// paid that look, and the drain's last results came seconds later. It
// lives in this process: a delivery on another replica looks.
type leftUncalled struct {
	mu sync.Mutex
	// left holds, by a request's stream sequence, the delivery that left
	// it: only the next one is known not to follow a call (another
	// replica may have taken one in between). older holds the notes made
	// before left last filled up (half of uncalledKept), and is dropped
	// when it fills up again. A note is taken back only by the next
	// delivery here that finds no entry: one whose next delivery another
	// replica took, or that found the claim written as it went back, stays
	// until then. Kept in one list, such notes filled it for good, and no
	// request was noted any more.
	left, older map[uint64]uint64
}

// note notes that the delivery-th delivery of the request at seq left it
// with no call sent.
func (l *leftUncalled) note(seq, delivery uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.older, seq)
	if len(l.left) >= uncalledKept/2 {
		l.older, l.left = l.left, nil
	}
	if l.left == nil {
		l.left = make(map[uint64]uint64)
	}
	l.left[seq] = delivery
}

// next says whether the delivery-th delivery of the request at seq is the
// one after a delivery this process left with no call sent, and forgets
// the request.
func (l *leftUncalled) next(seq, delivery uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := l.followsLocked(seq, delivery)
	delete(l.left, seq)
	delete(l.older, seq)
	return ok
}

// follows says whether the delivery-th delivery of the request at seq is
// the one after a delivery this process left with no call sent, as next
// does, without forgetting the request.
func (l *leftUncalled) follows(seq, delivery uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.followsLocked(seq, delivery)
}

func (l *leftUncalled) followsLocked(seq, delivery uint64) bool {
	d, ok := l.left[seq]
	if !ok {
		d, ok = l.older[seq]
	}
	return ok && d+1 == delivery
}
