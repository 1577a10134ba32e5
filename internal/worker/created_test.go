package worker

import (
	"fmt"
	"testing"
	"time"
)

// TestCreatedActions: an action answered created for one request is
// another's to every other request, not to its own; actions without an id
// are not remembered; entries older than createdRemembered are dropped
// as new ones come.
func TestCreatedActions(t *testing.T) {
	t.Parallel()
	var c createdActions
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	if c.forAnother("x", "b") {
		t.Fatal("an action nobody was answered for is another request's")
	}
	c.note("x", "a", now)
	c.note("", "a", now)
	if !c.forAnother("x", "b") {
		t.Error("x, answered created for a, is not another request's to b")
	}
	if c.forAnother("x", "a") || c.forAnother("", "b") {
		t.Error("x is another request's to a, which it was answered for, or an action without id is")
	}
	c.note("y", "c", now.Add(createdRemembered))
	if _, kept := c.byID[idHash("x")]; kept || len(c.byID) != 1 {
		t.Errorf("%d actions remembered, x kept %v; want y alone once x is %v old", len(c.byID), kept, createdRemembered)
	}
}

// TestCreatedActionsPrunedWhenQuiet: a tenant that answered many actions
// and then goes quiet holds none of them once they are older than
// createdRemembered, pruned with the statistics, and its memory goes.
func TestCreatedActionsPrunedWhenQuiet(t *testing.T) {
	t.Parallel()
	var c createdActions
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for i := range 1500 {
		c.note(fmt.Sprintf("action-%d", i), fmt.Sprintf("request-%d", i), now.Add(time.Duration(i)*800*time.Millisecond))
	}
	last := now.Add(1499 * 800 * time.Millisecond)
	if n := len(c.byID); n == 0 || n == 1500 {
		t.Fatalf("%d actions held after 20 minutes of notes, want those of the last %v", n, createdRemembered)
	}
	if !c.forAnother("action-1499", "request-0") {
		t.Error("the last action is not another request's")
	}
	c.prune(last.Add(createdRemembered))
	if len(c.byID) != 0 || c.byID != nil || c.order != nil {
		t.Errorf("%d actions held (map %v, order %d) once quiet for %v, want none and no memory", len(c.byID), c.byID != nil, len(c.order), createdRemembered)
	}
	if c.forAnother("action-1499", "request-0") {
		t.Error("an action pruned is still another request's")
	}
}
