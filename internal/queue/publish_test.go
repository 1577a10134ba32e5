package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWaitStoredGivesUpOnAnAnswerThatNeverComes: a store whose answer never
// comes (a publish that reached a stream leader just lost) fails after
// StepTimeout as an outage, even under a longer deadline, so its request
// is taken again soon.
func TestWaitStoredGivesUpOnAnAnswerThatNeverComes(t *testing.T) {
	t.Parallel()
	never := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	answered := func(context.Context) error { return nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- WaitStored(ctx, answered, never) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !Outage(err) {
			t.Errorf("WaitStored: %v, want a deadline counted as an outage", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WaitStored still waiting after 20s for an answer that never comes (its caller's deadline is a minute)")
	}
}
