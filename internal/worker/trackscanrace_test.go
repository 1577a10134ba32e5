package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// heldScan is a tracking store whose scans, once armed, read the ledger
// and then wait, before they return, until released: the scan's read is
// over, the tracker's memory not replaced yet.
type heldScan struct {
	trackStore
	armed   chan struct{} // closed: hold the scans
	scanned chan struct{}
	release chan struct{}
}

func (s *heldScan) ScanTracked(ctx context.Context, tenant string, fn func(state []byte) error) error {
	err := s.trackStore.ScanTracked(ctx, tenant, fn)
	select {
	case <-s.armed:
	default:
		return err
	}
	select {
	case s.scanned <- struct{}{}:
	default:
	}
	<-s.release
	return err
}

// TestTrackingStartedDuringAScanIsHeld: an action whose tracking starts
// just before a scan of the ledger (its first event on its way) and is
// stored just after the scan read the ledger is held, counted and looked
// at when due. Before, the scan's end dropped it from memory, as begun
// before the scan, which had not seen it: 0 of 1 actions looked at
// until the next scan, five minutes on, nor counted among those
// followed until then.
func TestTrackingStartedDuringAScanIsHeld(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Succeeded")
	_, js := natstest.Connect(t)
	store := &heldScan{trackStore: contosoLedger(t, js), armed: make(chan struct{}),
		scanned: make(chan struct{}, 1), release: make(chan struct{})}
	log := &eventLog{}
	publishing, gate := make(chan struct{}, 1), make(chan struct{})
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			select {
			case publishing <- struct{}{}:
			default:
			}
			<-gate
			return log.publish(ctx, subject, msgID, data)
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTracker(t, tr)
	testwait.Waiters(t, clock, 1) // the first scan is over: the tracker waits for the next
	close(store.armed)
	tracked := make(chan error, 1)
	go func() {
		tracked <- tr.track(t.Context(), &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1),
			MachineAction: json.RawMessage(`{"id":"act-1","type":"Offboard","status":"Pending"}`)})
	}()
	testwait.For(t, publishing, 10*time.Second, "the first event on its way")
	clock.Advance(trackReload) // the next scan begins
	testwait.For(t, store.scanned, 10*time.Second, "the scan reading the ledger")
	close(gate)
	if err := testwait.For(t, tracked, 10*time.Second, "the tracking started"); err != nil {
		t.Fatal(err)
	}
	close(store.release)
	// The action's first look was due a minute after it started, four
	// minutes ago: it comes now, with no more time passing.
	deadline := time.Now().Add(5 * time.Second)
	for len(log.all()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var got []string
	for _, ev := range log.all() {
		got = append(got, ev.Status)
	}
	if len(got) < 2 || got[1] != "Succeeded" {
		t.Errorf("events %v: the action's first look, due four minutes ago, not made", got)
	}
}
