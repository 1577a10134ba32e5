// Package testwait bounds a test's waits: a wait for something that never
// comes fails the test after a bound, naming what it waited for, instead
// of holding the package until its timeout, whose goroutine dump names no
// test.
package testwait

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// For waits up to d for what ch carries next and returns it; the test
// fails if nothing comes.
func For[T any](tb testing.TB, ch <-chan T, d time.Duration, what string) T {
	tb.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		tb.Fatalf("not within %v: %s", d, what)
	}
	var zero T
	return zero
}

// Waiters waits up to 10 s until n goroutines wait on the fake clock.
func Waiters(tb testing.TB, clock *clockwork.FakeClock, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, n); err != nil {
		tb.Fatalf("%d waiters on the clock not within 10 s: %v", n, err)
	}
}
