package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestScanOfTrackedActionsHoldsABatchAtATime: a scan of a tenant's
// followed actions holds no more of them in the worker's memory than one
// batch, however many the ledger holds and however slowly the tracker
// takes them. Through a watcher (a push consumer), the server sent as many
// as its flow control lets through, up to 32 MiB at a time: with the
// tracker held at the first of 20,000 states, 4,871 were sent; read at
// the tracker's pace, 42,886 of 100,000 were waiting at once, and a
// worker scanning 250,000 peaked at 101.9 MiB (31.6 MiB now), each
// tracking tenant's scan on top of the others'. The scan still reads
// every state once, and leaves out deleted keys.
func TestScanOfTrackedActionsHoldsABatchAtATime(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	if _, err := Ensure(ctx, js, Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	l, err := NewLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	state := `{"actionId":"a","pad":"` + strings.Repeat("x", 300) + `"}`
	for i := range n {
		if _, err := js.PublishAsync(l.subject(trackKey("contoso", fmt.Sprintf("act-%06d", i))), []byte(state)); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 { // within the client's outstanding stores
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("the states not stored within a minute")
			}
		}
	}
	for _, id := range []string{"act-000007", "act-000008"} {
		if err := l.kv.Delete(ctx, trackKey("contoso", id)); err != nil {
			t.Fatal(err)
		}
	}
	release, read, done := heldScan(ctx, l, "contoso")
	stream, err := js.Stream(ctx, "KV_"+offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	delivered := func() int {
		most := 0
		for ci := range stream.ListConsumers(ctx).Info() {
			most = max(most, int(ci.Delivered.Consumer)) //nolint:gosec // a test's count
		}
		return most
	}
	// What the server sends while the tracker holds the first state,
	// once it has stopped sending.
	sent, settled := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for settled < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the scan's consumer still sending after 20 s: %d sent", sent)
		}
		time.Sleep(50 * time.Millisecond)
		d := delivered()
		if d > 0 && d == sent {
			settled++
		} else {
			settled = 0
		}
		sent = d
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sent > trackScanBatch {
		t.Errorf("%d states sent to the scan while it read the first one, want at most %d", sent, trackScanBatch)
	}
	if *read != n-2 {
		t.Errorf("the scan read %d states, want %d (the two deleted left out)", *read, n-2)
	}
	for ci := range stream.ListConsumers(ctx).Info() {
		t.Errorf("consumer %s left on the ledger after the scan", ci.Name)
	}
}

// TestScanOfTrackedActionsEndsWhenTheLastStateIsGone: a state counted
// when the scan began and gone before it was read (the ledger's TTL)
// does not hold the scan for ever: it ends once nothing is left to read,
// with the states that were there.
func TestScanOfTrackedActionsEndsWhenTheLastStateIsGone(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	if _, err := Ensure(ctx, js, Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	l, err := NewLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	// One more than the scan's first pull: the last is not sent with it.
	const n = trackScanBatch + 1
	for i := range n {
		if _, err := js.PublishAsync(l.subject(trackKey("contoso", fmt.Sprintf("act-%d", i))), []byte(`{"actionId":"a"}`)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("the states not stored within a minute")
	}
	stream, err := js.Stream(ctx, "KV_"+offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	release, read, done := heldScan(ctx, l, "contoso")
	waitScan(t, stream)
	// Gone as the TTL removes it: no delete marker left.
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(l.subject(trackKey("contoso", fmt.Sprintf("act-%d", n-1))))); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(4 * trackScanStall):
		t.Fatalf("the scan still waits for a state gone, %v on", 4*trackScanStall)
	}
	if *read != n-1 {
		t.Errorf("the scan read %d states, want the %d left", *read, n-1)
	}
}

// waitScan waits until a scan's consumer has sent its first states.
func waitScan(t *testing.T, stream jetstream.Stream) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for ci := range stream.ListConsumers(t.Context()).Info() {
			if ci.Delivered.Consumer > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no scan's consumer sent anything within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldScan runs a scan of tenant's followed actions that holds at its
// first state until release is closed; read counts the states it had,
// to be read once done has the scan's end.
func heldScan(ctx context.Context, l *Ledger, tenant string) (release chan struct{}, read *int, done chan error) {
	release, read, done = make(chan struct{}), new(int), make(chan error, 1)
	go func() {
		done <- l.ScanTracked(ctx, tenant, func([]byte) error {
			if *read == 0 {
				<-release
			}
			*read++
			return nil
		})
	}()
	return release, read, done
}
