package worker

import (
	"cmp"
	"context"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// The worker's bound on the requests it works on at once, over all its
// tenants (Options.MaxRequests). A tenant's loop takes room for the
// requests it pulls right before the pull (queue.Room), so a loop waiting
// for requests holds none and a pulled request never waits for room. A
// request gives its room back when it is done, and for as long as it waits
// for something other than this worker's work (quota, budget, a backoff,
// another request on the same device: aside), so that a tenant held up
// never holds up the others.

// capacity is the worker's room, one token per request; nil: no bound.
type capacity chan struct{}

// Take waits for room for one request and takes room for up to n.
func (c capacity) Take(ctx context.Context, n int) (int, error) {
	select {
	case c <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	took := 1
	for took < n {
		select {
		case c <- struct{}{}:
			took++
		default:
			return took, nil
		}
	}
	return took, nil
}

// Give hands back room for n requests.
func (c capacity) Give(n int) {
	for range n {
		<-c
	}
}

// room is the bound as the tenants' sources take it; nil: none.
func (w *Worker) room() queue.Room {
	if w.capacity == nil {
		return nil
	}
	return w.capacity
}

// place is one request's room. Only the request's goroutine uses it.
type place struct {
	c    capacity
	held bool
}

// newPlace is the room of a request just pulled (nil without a bound).
func (w *Worker) newPlace() *place {
	if w.capacity == nil {
		return nil
	}
	return &place{c: w.capacity, held: true}
}

// give hands the room back, if held.
func (p *place) give() {
	if p != nil && p.held {
		p.c.Give(1)
		p.held = false
	}
}

// take takes room again, waiting for it.
func (p *place) take(ctx context.Context) error {
	if p == nil || p.held {
		return nil
	}
	if _, err := p.c.Take(ctx, 1); err != nil {
		return err
	}
	p.held = true
	return nil
}

type placeKey struct{}

// aside runs wait, a wait for something other than this worker's work,
// without the request's room (ctx carries it), and takes the room back
// after it. The wait, and the one for the room, end when the worker stops
// taking requests (untilStop).
func aside(ctx context.Context, wait func(context.Context) error) error {
	_, err := asideFor(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, wait(ctx) }, nil)
	return err
}

// asideFor is aside for a wait that gets something (a permit, a lock):
// when the room cannot be taken back, or the worker stopped taking
// requests by the time the wait ended, drop lets it go and the error is
// returned. A stop frees what others held (a request that leaves unlocks
// its device, gives its budget slot and its room back), which can end a
// wait before the stop reaches it: the request goes back to the stream
// all the same, and makes no call after the stop.
func asideFor[T any](ctx context.Context, wait func(context.Context) (T, error), drop func(T)) (T, error) {
	p, _ := ctx.Value(placeKey{}).(*place)
	p.give()
	ctx, cancel := untilStop(ctx)
	defer cancel()
	got, err := wait(ctx)
	if err != nil {
		return got, err
	}
	if err := cmp.Or(p.take(ctx), stopped(ctx)); err != nil {
		if drop != nil {
			drop(got)
		}
		var zero T
		return zero, err
	}
	return got, nil
}

// stopKey carries, in a request's context, the context that ends when the
// worker stops taking requests (Worker.fetchCtx).
type stopKey struct{}

// untilStop is ctx that also ends when the worker stops taking requests,
// if ctx is a request's. A wait for something other than this worker's
// work (a place in the quota, a budget slot, a backoff, another request
// on the same device, a 429's pause) ends then, and the request goes back
// to the stream: a stop waits for requests whose calls are under way, not
// for those waits, which could hold it until --shutdown-timeout. A
// request left after a call that may have acted is taken up again as a
// call cut off: its action is looked for first.
func untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(ctx)
	stop := stopOf(ctx)
	if stop == nil {
		return wctx, cancel
	}
	unhook := context.AfterFunc(stop, cancel)
	return wctx, func() { unhook(); cancel() }
}

// stopped is the error of the stop once the worker stopped taking
// requests, if ctx is a request's; nil before. It is read from the stop
// itself: the contexts untilStop ends, it ends a moment later.
func stopped(ctx context.Context) error {
	if stop := stopOf(ctx); stop != nil {
		return stop.Err()
	}
	return nil
}

// stopOf is the context that ends when the worker stops taking requests,
// if ctx is a request's; nil otherwise.
func stopOf(ctx context.Context) context.Context {
	stop, _ := ctx.Value(stopKey{}).(context.Context)
	return stop
}
