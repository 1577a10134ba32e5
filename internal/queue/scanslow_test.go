package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestScanTrackedAsksNoPullTwiceOfASlowServer: a server that reads a
// scan's pull a few seconds late (busy, or its link slow) has taken it
// all the same. The scan does not ask for it again meanwhile: the server
// then sent what both pulls asked for at once, more than the client
// holds for a reader busy with the first of them; it dropped the rest and
// the scan failed (states sent were not received) on a healthy server.
func TestScanTrackedAsksNoPullTwiceOfASlowServer(t *testing.T) {
	t.Parallel()
	const n = 3 * trackScanBatch
	c := natstest.Start(t, 1)
	_, admin := c.Connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := Ensure(ctx, admin, Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	storeTracked(t, admin, "contoso", n)
	link := newCuttableLink(t, strings.TrimPrefix(c.URLs(), "nats://"))
	nc, js := natstest.ConnectTo(t, "nats://"+link.addr(), nats.MaxReconnects(-1))
	l, err := NewLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := admin.Stream(ctx, "KV_"+offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	// sent is what the scan's consumer sent, and whether it holds a
	// pull yet.
	sent := func() (uint64, bool) {
		var most uint64
		waiting := false
		for ci := range stream.ListConsumers(ctx).Info() {
			most, waiting = max(most, ci.Delivered.Consumer), waiting || ci.NumWaiting > 0
		}
		return most, waiting
	}
	// The reader takes the first batch once the server reads no more of
	// what the client sends: the pull asked half-way through it waits
	// at the server's door. The reader then waits, for longer than two
	// beats the scan might ask for; the server reads on, and the reader
	// takes the states that come only once they all came.
	before := nc.Stats().InMsgs
	slow, caught := make(chan struct{}), make(chan struct{})
	read := 0
	done := make(chan error, 1)
	go func() {
		done <- l.ScanTracked(ctx, "contoso", func([]byte) error {
			switch read {
			case 0:
				select {
				case <-slow:
				case <-ctx.Done():
				}
			case trackScanBatch:
				select {
				case <-caught:
				case <-ctx.Done():
				}
			}
			read++
			return nil
		})
	}()
	wait := func(what string, d time.Duration, ok func() bool) bool {
		t.Helper()
		for end := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				return false
			}
		}
		return true
	}
	if !wait("the first batch", 10*time.Second, func() bool { return nc.Stats().InMsgs >= before+1+trackScanBatch }) {
		t.Fatal("the first batch not received within 10 s")
	}
	link.holdUp(true)
	close(slow)
	// 5 s: past two beats of 2 s, within the 5 s of a request to the
	// server. A second pull kept is the scan asking again.
	wait("a pull asked again", 5*time.Second, func() bool { return link.pullsKept() > 1 })
	t.Logf("pulls asked while the server read nothing: %d", link.pullsKept())
	link.holdUp(false)
	wait("what was asked sent and received", 5*time.Second, func() bool {
		s, waiting := sent()
		return s > trackScanBatch && !waiting && nc.Stats().InMsgs >= before+1+s
	})
	close(caught)
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("the scan did not end")
	}
	if err != nil || read != n {
		t.Fatalf("the scan read %d of %d states: %v", read, n, err)
	}
}
