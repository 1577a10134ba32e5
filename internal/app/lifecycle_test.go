package app

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLifecycleStopsInReverseUnderOneCap: the cleanups run last first,
// their errors are joined, a second stop returns the first answer, and a
// step that never returns does not hold Stop past its cap although the
// caller's context never ends.
func TestLifecycleStopsInReverseUnderOneCap(t *testing.T) {
	t.Parallel()
	var l lifecycle
	var order []string
	errA, errC := errors.New("a failed"), errors.New("c failed")
	l.add("a", func(context.Context) error { order = append(order, "a"); return errA })
	l.add("b", func(context.Context) error { order = append(order, "b"); return nil })
	l.add("c", func(context.Context) error { order = append(order, "c"); return errC })
	err := l.stop(context.Background(), time.Minute)
	if !slices.Equal(order, []string{"c", "b", "a"}) {
		t.Errorf("order %v, want [c b a]", order)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Errorf("error %v, want both steps' errors", err)
	}
	if again := l.stop(context.Background(), time.Minute); !errors.Is(again, err) || len(order) != 3 {
		t.Errorf("second stop ran again or answered %v", again)
	}

	var stuck lifecycle
	release := make(chan struct{})
	defer close(release)
	stuck.add("never returns", func(context.Context) error { <-release; return nil })
	err = stuck.stop(context.Background(), 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "never returns") {
		t.Errorf("error %v, want one naming the step still running", err)
	}
}

// TestLifecycleCallerBound: only a callerBound step ends with the caller's
// context; the steps after it still get their time.
func TestLifecycleCallerBound(t *testing.T) {
	t.Parallel()
	var l lifecycle
	var later error
	l.add("later", func(ctx context.Context) error { later = ctx.Err(); return nil })
	l.addCallerBound("requests", func(ctx context.Context) error { <-ctx.Done(); return nil })
	caller, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.stop(caller, time.Minute); err != nil {
		t.Fatal(err)
	}
	if later != nil {
		t.Errorf("a step after the caller's context ended got a done context: %v", later)
	}
}

// TestStopWithTheLongestShutdownTimeout: a --shutdown-timeout near the
// longest duration (an operator's "for ever") is no cap at all on the
// requests, but Stop's cap, the timeout plus StopReserve, wrapped round
// to a negative one: Stop gave up at once, naming the step under way,
// and left the rest running.
func TestStopWithTheLongestShutdownTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	e.opts.ShutdownTimeout = math.MaxInt64 - time.Second
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
}
