package worker

import (
	"hash/maphash"
	"sync"
	"time"
)

// createdRemembered is how long this process remembers an action it
// answered created: twice the clock skew handedBack allows for. An action
// handed back later than that is told by its creation time (when the API
// gives one).
const createdRemembered = 2 * clockSkew

// createdActions remembers, per tenant, the actions this process answered
// created and the request each was answered for. An offboard answered 2xx
// with one of them that another request was answered created for handed
// it back: it is that request's action, not this one's, whatever its
// comment and creation time say (two requests for a device with the same
// comment, a campaign's or a CMDB's fixed text, serialised by the device
// lock).
//
// It lives in this process, as the device lock does: a request for the
// same device on another replica is not serialised with this one's and
// does not see what it answered; there, a handed-back action is told from
// the call's own by its comment and creation time alone (handedBack). The
// ledger's tracking entries (queue.Ledger.TrackedState) would tell across
// replicas when tracking is on, but reading one for every fresh action
// costs a JetStream round trip per call; a lookup here costs none.
type createdActions struct {
	mu sync.Mutex
	// noted holds the actions as noted, oldest first: by the action id's
	// hash, the hash of the request id it was answered created for and
	// when, 24 bytes each. A tenant draining its quota adds 100 a minute:
	// up to 1000 within createdRemembered (250 on average over the hour's
	// 1500), and thousands of tenants share the process: a map by id
	// beside this order took about twice the memory (5.2 against 3 KiB a
	// tenant at 100). A lookup, for each offboard answered 2xx and each
	// action of a device looked through, scans a thousand entries at most.
	// Those older than createdRemembered are dropped from the front.
	noted []createdAction
}

type createdAction struct {
	id      uint64 // the action id's hash
	request uint64 // the request id's hash
	at      int64  // Unix ns
}

// createdSeed seeds the ids' hashes. Two ids with one hash (one chance in
// 2^64 a pair) would at worst answer a request already_pending.
var createdSeed = maphash.MakeSeed()

func idHash(id string) uint64 { return maphash.String(createdSeed, id) }

// note remembers that the action was answered created for the request.
func (c *createdActions) note(actionID, requestID string, now time.Time) {
	if actionID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	c.noted = append(c.noted, createdAction{id: idHash(actionID), request: idHash(requestID), at: now.UnixNano()})
}

// forAnother says whether the action was answered created for another
// request than this one (the last time it was noted).
func (c *createdActions) forAnother(actionID, requestID string) bool {
	if actionID == "" {
		return false
	}
	id := idHash(actionID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.noted) - 1; i >= 0; i-- {
		if c.noted[i].id == id {
			return c.noted[i].request != idHash(requestID)
		}
	}
	return false
}

// prune drops the actions noted createdRemembered or longer ago; the
// worker calls it for every tenant with its statistics, so that a tenant
// gone quiet does not keep them.
func (c *createdActions) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
}

func (c *createdActions) pruneLocked(now time.Time) {
	cut := now.Add(-createdRemembered).UnixNano()
	n := 0
	for n < len(c.noted) && c.noted[n].at <= cut {
		n++
	}
	switch {
	case n == 0:
	case n == len(c.noted):
		c.noted = nil // quiet: no memory held
	case len(c.noted)-n <= cap(c.noted)/4:
		// The array keeps its room: copied once a quarter of it is in
		// use, it gives the memory of a burst back.
		c.noted = append([]createdAction(nil), c.noted[n:]...)
	default:
		c.noted = c.noted[n:] // append moves it to a new array as it grows
	}
}
