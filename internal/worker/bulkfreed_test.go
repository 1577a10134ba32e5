package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBulkPlaceFreedWakesTheWaitEveryTime: a fetch of normal requests
// alone, every bulk place held, ends when a bulk place frees, also right
// after an earlier such fetch returned with a normal request: the earlier
// one's watch must not take the wake-up meant for the next.
func TestBulkPlaceFreedWakesTheWaitEveryTime(t *testing.T) {
	t.Parallel()
	tr := &tenantRun{landed: context.Background()}
	prios := []offboard.Priority{offboard.Normal, offboard.Bulk}
	missed := 0
	const rounds = 300
	for range rounds {
		bulk := newBulkPlaces(2)
		if bulk.take(1) != 1 {
			t.Fatal("no bulk place")
		}
		// A normal request comes at once.
		_, _ = fetchWithinBulkPlaces(t.Context(), tr, bulk, 1, prios, func(context.Context, int, int, []offboard.Priority) ([]queue.Delivery, error) {
			return []queue.Delivery{{Prio: offboard.Normal}}, nil
		})
		// None comes: the fetch waits until the bulk place frees.
		waiting := make(chan struct{})
		done := make(chan error, 1)
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			_, err := fetchWithinBulkPlaces(ctx, tr, bulk, 1, prios, func(ctx context.Context, _, _ int, _ []offboard.Priority) ([]queue.Delivery, error) {
				close(waiting)
				<-ctx.Done()
				return nil, ctx.Err()
			})
			done <- err
		}()
		<-waiting
		bulk.give()
		select {
		case err := <-done:
			cancel()
			if !errors.Is(err, errBulkPlaceFreed) {
				t.Fatalf("the wait ended with %v, want %v", err, errBulkPlaceFreed)
			}
		case <-time.After(200 * time.Millisecond):
			missed++
			cancel()
			<-done
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d waits for a normal request went on after the bulk place freed", missed, rounds)
	}
}
