package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestStopCountsARequestThatStartsAsItCounts: a request a tenant loop
// hands over while a stop whose time ran out counts those under way
// (a pull still under way at the stop) is cancelled as those are, and
// counted with them: the stop says how many were cancelled, and come
// back from the stream. Before, one that started between the stop's two
// reads of its counters was in neither, and a stop with nothing else
// under way answered nil.
func TestStopCountsARequestThatStartsAsItCounts(t *testing.T) {
	t.Parallel()
	for _, before := range []int{0, 1} {
		t.Run(fmt.Sprintf("%d under way before", before), func(t *testing.T) {
			t.Parallel()
			e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
			w := e.w
			work, cancelWork := context.WithCancel(t.Context())
			stopWork := w.stopWork
			w.stopWork = func() { stopWork(); cancelWork() }
			waitForTheStop := func() { <-work.Done() }
			for range before {
				w.goHandle(waitForTheStop)
			}
			w.fetchers.Add(1) // a tenant loop whose pull is still under way
			w.counted = func() {
				w.goHandle(waitForTheStop)
				w.fetchers.Done()
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := w.Stop(ctx)
			want := fmt.Sprintf("stop: %d %v", before+1, ErrCancelled)
			if !errors.Is(err, ErrCancelled) || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Stop: %v, want %q", err, want)
			}
			w.stopErr = nil // checked: setupLoop's cleanup finds the worker stopped
		})
	}
}
