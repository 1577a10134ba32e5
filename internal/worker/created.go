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
	byID   map[uint64]createdAction
	pruned time.Time // when entries older than createdRemembered were last dropped
}

type createdAction struct {
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
	if c.byID == nil {
		c.byID = map[uint64]createdAction{}
	}
	if now.Sub(c.pruned) >= createdRemembered {
		oldest := now.Add(-createdRemembered).UnixNano()
		for id, a := range c.byID {
			if a.at <= oldest {
				delete(c.byID, id)
			}
		}
		c.pruned = now
	}
	c.byID[idHash(actionID)] = createdAction{request: idHash(requestID), at: now.UnixNano()}
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
