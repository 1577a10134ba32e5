package worker

import (
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
	mu     sync.Mutex
	byID   map[string]createdAction
	pruned time.Time // when entries older than createdRemembered were last dropped
}

type createdAction struct {
	requestID string
	at        time.Time
}

// note remembers that the action was answered created for the request.
func (c *createdActions) note(actionID, requestID string, now time.Time) {
	if actionID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[string]createdAction{}
	}
	if now.Sub(c.pruned) >= createdRemembered {
		for id, a := range c.byID {
			if now.Sub(a.at) >= createdRemembered {
				delete(c.byID, id)
			}
		}
		c.pruned = now
	}
	c.byID[actionID] = createdAction{requestID: requestID, at: now}
}

// forAnother says whether the action was answered created for another
// request than this one.
func (c *createdActions) forAnother(actionID, requestID string) bool {
	if actionID == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.byID[actionID]
	return ok && a.requestID != requestID
}
