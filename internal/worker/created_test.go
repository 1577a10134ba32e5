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
	if len(c.noted) != 1 || c.noted[0].id != idHash("y") {
		t.Errorf("%d actions remembered; want y alone once x is %v old", len(c.noted), createdRemembered)
	}
	if c.forAnother("x", "b") {
		t.Error("x, dropped, is still another request's")
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
	if n := len(c.noted); n == 0 || n == 1500 {
		t.Fatalf("%d actions held after 20 minutes of notes, want those of the last %v", n, createdRemembered)
	}
	if !c.forAnother("action-1499", "request-0") {
		t.Error("the last action is not another request's")
	}
	c.prune(last.Add(createdRemembered))
	if c.noted != nil {
		t.Errorf("%d actions held (room for %d) once quiet for %v, want none and no memory", len(c.noted), cap(c.noted), createdRemembered)
	}
	if c.forAnother("action-1499", "request-0") {
		t.Error("an action pruned is still another request's")
	}
}

// TestCreatedActionNotedAgain: an action noted for one request and later
// for another is the later one's: the last note counts, as it did when
// the actions were kept by id.
func TestCreatedActionNotedAgain(t *testing.T) {
	t.Parallel()
	var c createdActions
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	c.note("x", "a", now)
	c.note("x", "b", now.Add(time.Second))
	if c.forAnother("x", "b") || !c.forAnother("x", "a") {
		t.Error("x, noted last for b, is another request's to b, or a's own")
	}
}

// TestCreatedActionsGiveBackABurst: a tenant whose notes came in a burst
// and then slowed holds no more room than about four times what it keeps.
func TestCreatedActionsGiveBackABurst(t *testing.T) {
	t.Parallel()
	var c createdActions
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for i := range 1500 {
		c.note(fmt.Sprintf("burst-%d", i), "r", now.Add(time.Duration(i)*time.Millisecond))
	}
	// Past createdRemembered the burst's last 10 are kept, then 10 more.
	late := now.Add(createdRemembered + 1489*time.Millisecond)
	for i := range 10 {
		c.note(fmt.Sprintf("late-%d", i), "r", late.Add(time.Duration(i)*time.Microsecond))
	}
	if len(c.noted) != 20 || cap(c.noted) > 80 {
		t.Errorf("%d actions held in room for %d, want 20 in room for at most 80", len(c.noted), cap(c.noted))
	}
}
