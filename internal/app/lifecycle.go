package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// cleanup is one step of Stop: it undoes what one part of Start brought
// up. The context it gets ends at Stop's time cap (and, for a callerBound
// step, when the caller's context ends); a step must return when it does.
type cleanup struct {
	name        string
	stop        func(ctx context.Context) error
	callerBound bool
}

// lifecycle holds the cleanups Start registered, and runs them once, in
// reverse order, under one time cap (the model is Prometheus
// Alertmanager's app/lifecycle.go).
type lifecycle struct {
	mu       sync.Mutex
	cleanups []cleanup
	running  string // the step under way, for the error when the cap passes

	once sync.Once
	err  error
}

// add registers a cleanup; Stop runs it before those registered earlier.
func (l *lifecycle) add(name string, stop func(context.Context) error) {
	l.push(cleanup{name: name, stop: stop})
}

// addCallerBound registers a cleanup that also ends when Stop's caller's
// context does: the step whose length the caller chooses.
func (l *lifecycle) addCallerBound(name string, stop func(context.Context) error) {
	l.push(cleanup{name: name, stop: stop, callerBound: true})
}

func (l *lifecycle) push(c cleanup) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, c)
}

// stop runs the cleanups in reverse order and joins their errors. It
// returns at the latest when limit has passed, whatever ctx does: the
// steps get a context that ends then, and a step that still does not
// return is left behind with an error naming it. Only callerBound steps
// end early when ctx does; the others get their time whatever the caller
// does. Later calls return the first call's answer.
func (l *lifecycle) stop(ctx context.Context, limit time.Duration) error {
	l.once.Do(func() {
		capped, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		defer cancel()
		l.mu.Lock()
		steps := l.cleanups
		l.cleanups = nil
		l.mu.Unlock()

		var errs []error
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := len(steps) - 1; i >= 0; i-- {
				s := steps[i]
				l.mu.Lock()
				l.running = s.name
				l.mu.Unlock()
				if err := s.run(capped, ctx); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
				}
			}
		}()
		select {
		case <-done:
			l.err = errors.Join(errs...)
		case <-capped.Done():
			select {
			case <-done: // finished just as the cap passed
				l.err = errors.Join(errs...)
			default:
				l.mu.Lock()
				l.err = fmt.Errorf("stop: %s did not finish within %s", l.running, limit)
				l.mu.Unlock()
			}
		}
	})
	return l.err
}

// run runs the step with the capped context, ended early by the caller's
// context when the step is callerBound.
func (c cleanup) run(capped, caller context.Context) error {
	if !c.callerBound {
		return c.stop(capped)
	}
	bound, cancel := context.WithCancelCause(capped)
	defer cancel(nil)
	stopAfter := context.AfterFunc(caller, func() { cancel(context.Cause(caller)) })
	defer stopAfter()
	return c.stop(bound)
}

// ErrStopped is Start's error when Stop came before the start was over,
// or before it began: what the start had brought up is stopped again.
var ErrStopped = errors.New("stopped before the start was over")
