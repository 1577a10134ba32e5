package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// ttlStore is the ledger as its TTL (--ledger-ttl) leaves it, on the
// tracker's clock: an action's state not written again for ttl is gone.
type ttlStore struct {
	trackStore
	clock clockwork.Clock
	ttl   time.Duration

	mu      sync.Mutex
	written map[string]time.Time
}

func (s *ttlStore) gone(actionID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.written[actionID]
	return ok && s.clock.Since(at) >= s.ttl
}

func (s *ttlStore) wrote(actionID string) {
	s.mu.Lock()
	s.written[actionID] = s.clock.Now()
	s.mu.Unlock()
}

func (s *ttlStore) TrackedState(ctx context.Context, tenant, actionID string) ([]byte, uint64, error) {
	if s.gone(actionID) {
		return nil, 0, nil
	}
	return s.trackStore.TrackedState(ctx, tenant, actionID)
}

func (s *ttlStore) TrackOver(ctx context.Context, tenant, actionID string, state []byte, rev uint64) (uint64, error) {
	if s.gone(actionID) {
		return 0, queue.ErrConflict // no entry to write over
	}
	rev, err := s.trackStore.TrackOver(ctx, tenant, actionID, state, rev)
	if err == nil {
		s.wrote(actionID)
	}
	return rev, err
}

func (s *ttlStore) TrackNew(ctx context.Context, tenant, actionID string, state []byte) error {
	err := s.trackStore.TrackNew(ctx, tenant, actionID, state)
	if err == nil {
		s.wrote(actionID)
	}
	return err
}

func (s *ttlStore) ScanTracked(ctx context.Context, tenant string, fn func(state []byte) error) error {
	return s.trackStore.ScanTracked(ctx, tenant, func(state []byte) error {
		var st tracked
		if json.Unmarshal(state, &st) == nil && st.ActionID != "" && s.gone(st.ActionID) {
			return nil
		}
		return fn(state)
	})
}

// TestTrackingStateOutlivesAFailedEnd: with a maxInterval longer than
// the ledger's TTL (firstCheck 40 min, maxAge 1 h, the TTL 2 h,
// maxInterval 3 h), an action whose final event is refused once at
// maxAge still gets it. The failed end backed off by the doubled
// interval, 160 min, stored for a next look after the TTL: the ledger
// forgot the action first, and its tracking ended with no final event. A state's next look is now never
// stored further off than maxAge, which the start keeps shorter than the
// TTL.
func TestTrackingStateOutlivesAFailedEnd(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	store := &ttlStore{trackStore: contosoLedger(t, js), clock: clock, ttl: 2 * time.Hour, written: map[string]time.Time{}}
	api := scriptedFor(clock, "Pending")
	log := &eventLog{}
	var refused atomic.Bool
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(40 * time.Minute),
			MaxInterval: config.Duration(3 * time.Hour), MaxAge: config.Duration(time.Hour)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			if strings.HasSuffix(msgID, ":ended") && refused.CompareAndSwap(false, true) {
				return errors.New("nats: timeout")
			}
			return log.publish(ctx, subject, msgID, data)
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, tr)
	for range 6 * 60 / 5 { // six hours in steps of 5 min
		waitTracker(t, clock)
		if evs := log.all(); evs[len(evs)-1].Final {
			break
		}
		clock.Advance(5 * time.Minute)
	}
	evs := log.all()
	if !refused.Load() {
		t.Fatal("the final event was never refused")
	}
	if last := evs[len(evs)-1]; !last.Final {
		t.Errorf("no final event in six hours: %d events, the last %s; the ledger forgot the action", len(evs), last.Status)
	}
}

// waitTracker waits until the tracker waits on the clock.
func waitTracker(t *testing.T, clock *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the tracker never waited: %v", err)
	}
}
