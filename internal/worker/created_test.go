package worker

import (
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
