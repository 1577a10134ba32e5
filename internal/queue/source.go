package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Source hands out a tenant's requests one at a time, normal priority
// before bulk. It pulls a message only when asked, so requests that wait
// for quota stay in the stream: not in memory, not delivered and unacked.
type Source struct {
	normal, bulk jetstream.Consumer
	wake         chan struct{}
	poll         time.Duration
}

// Next returns the next request, blocking until one is published or ctx
// ends.
func (s *Source) Next(ctx context.Context) (jetstream.Msg, offboard.Priority, error) {
	return s.NextOf(ctx, offboard.Normal, offboard.Bulk)
}

// NextOf is Next over the given priorities only (those not paused),
// normal before bulk.
func (s *Source) NextOf(ctx context.Context, prios ...offboard.Priority) (jetstream.Msg, offboard.Priority, error) {
	type source struct {
		cons jetstream.Consumer
		p    offboard.Priority
	}
	var from []source
	for _, c := range []source{{s.normal, offboard.Normal}, {s.bulk, offboard.Bulk}} {
		if slices.Contains(prios, c.p) {
			from = append(from, c)
		}
	}
	for {
		// A publish wakes us a moment before the stream has stored the
		// message, so look a few times, briefly, before going back to sleep.
		for _, pause := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond} {
			if pause > 0 {
				if err := sleep(ctx, pause); err != nil {
					return nil, "", err
				}
			}
			for _, c := range from {
				msg, err := fetchOne(ctx, c.cons)
				if err != nil {
					return nil, "", err
				}
				if msg != nil {
					return msg, c.p, nil
				}
			}
		}
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", ctx.Err()
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fetchOne pulls at most one message without waiting for one to arrive.
func fetchOne(ctx context.Context, c jetstream.Consumer) (jetstream.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch, err := c.FetchNoWait(1)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	// A no-wait pull has no timer of its own: if its answer never came,
	// ranging over the batch would stall the tenant for good.
	guard := time.NewTimer(fetchGuard)
	defer guard.Stop()
	var msg jetstream.Msg
	for {
		select {
		case m, ok := <-batch.Messages():
			if ok {
				msg = m
				continue
			}
		case <-guard.C:
			return nil, fmt.Errorf("fetch: no answer from the server in %v", fetchGuard)
			// Not on ctx: the server may have delivered the message
			// already, and one dropped here would wait out its ack wait.
			// The answer to a no-wait pull takes a round trip.
		}
		break
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msg, fmt.Errorf("fetch: %w", err)
	}
	return msg, nil
}

// fetchGuard bounds the wait for the answer to a no-wait pull.
const fetchGuard = 10 * time.Second

// Router wakes a tenant's Source when a request is published for it. It
// listens on the request subjects with a plain subscription, which costs
// the server nothing beyond a copy of each publish.
type Router struct {
	subjects offboard.Subjects
	sub      *nats.Subscription

	mu    sync.Mutex
	wakes map[string]chan struct{}
}

// NewRouter subscribes to the request subjects.
func NewRouter(nc *nats.Conn, s offboard.Subjects) (*Router, error) {
	r := &Router{subjects: s, wakes: map[string]chan struct{}{}}
	sub, err := nc.Subscribe(s.AllRequests(), func(m *nats.Msg) {
		tenant, _, ok := s.ParseRequest(m.Subject)
		if !ok {
			return
		}
		r.mu.Lock()
		ch := r.wakes[tenant]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- struct{}{}:
			default: // already awake
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", s.AllRequests(), err)
	}
	r.sub = sub
	return r, nil
}

// Source returns the tenant's source; poll bounds how long a missed wake-up
// can delay a request.
func (r *Router) Source(ctx context.Context, js jetstream.JetStream, tenant string, poll time.Duration) (*Source, error) {
	normal, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName(tenant, offboard.Normal))
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(tenant, offboard.Normal), err)
	}
	bulk, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName(tenant, offboard.Bulk))
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(tenant, offboard.Bulk), err)
	}
	wake := make(chan struct{}, 1)
	r.mu.Lock()
	r.wakes[tenant] = wake
	r.mu.Unlock()
	return &Source{normal: normal, bulk: bulk, wake: wake, poll: poll}, nil
}

// Close stops the subscription.
func (r *Router) Close() error { return r.sub.Unsubscribe() }

// Backlog reports how many requests of each priority wait in the stream
// for this tenant (not yet delivered).
func (s *Source) Backlog(ctx context.Context) (normal, bulk uint64, err error) {
	ni, err := s.normal.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	bi, err := s.bulk.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return ni.NumPending, bi.NumPending, nil
}
