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
	// byID holds, by the action id's hash, the hash of the request id it
	// was answered created for and when: about 34 bytes an action in the
	// map, where the ids as strings took about 156. A tenant draining its
	// quota adds 100 a minute, and thousands of tenants share the process.
	byID map[uint64]createdAction
	// order lists the actions as noted, oldest first, so that those older
	// than createdRemembered are dropped without a scan of the map.
	order []createdNote
	peak  int // the most actions held since the map was last made
}

type createdAction struct {
	request uint64 // the request id's hash
	at      int64  // Unix ns
}

type createdNote struct {
	id uint64
	at int64
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
	if c.byID == nil {
		c.byID = map[uint64]createdAction{}
	}
	id, at := idHash(actionID), now.UnixNano()
	c.byID[id] = createdAction{request: idHash(requestID), at: at}
	c.order = append(c.order, createdNote{id: id, at: at})
	c.peak = max(c.peak, len(c.byID))
}

// forAnother says whether the action was answered created for another
// request than this one.
func (c *createdActions) forAnother(actionID, requestID string) bool {
	if actionID == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.byID[idHash(actionID)]
	return ok && a.request != idHash(requestID)
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
	for n < len(c.order) && c.order[n].at <= cut {
		if a, ok := c.byID[c.order[n].id]; ok && a.at == c.order[n].at {
			delete(c.byID, c.order[n].id)
		}
		n++
	}
	if n == 0 {
		return
	}
	c.order = c.order[n:] // append moves it to a new array as it grows
	// A map keeps its room when emptied: made anew once it holds a
	// quarter of its peak, it gives the memory of a burst back.
	if len(c.byID) <= c.peak/4 {
		byID := make(map[uint64]createdAction, len(c.byID))
		for id, a := range c.byID {
			byID[id] = a
		}
		c.byID, c.peak = byID, len(byID)
		if len(byID) == 0 {
			c.byID, c.order = nil, nil
		}
	}
}
