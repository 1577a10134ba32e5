package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A request answered failed after offboard calls, a copy of it sent
// again within the results stream's duplicate window (24 h by default,
// longer than resultsMargin) and answered from the ledger: a dead letter
// of the copy, its result dropped as a repeat, and the entry not written
// again. With the first failure's dead letter removed, the copy's is the
// first kept, younger than the entry by up to that window: dead retry
// took the id for one the ledger still keeps, read no result of it, and
// retried the request once the ledger had forgotten the id; taken for a
// new request, its call could make a second action for the device. Not
// parallel: it sets resultsMargin.
func TestDeadRetryOfACalledRequestSentAgainWithinTheDuplicateWindowWhoseFirstDeadLetterIsGone(t *testing.T) {
	const ttl, dups = 3 * time.Second, 2 * time.Second
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}, Duplicates: dups, LedgerTTL: ttl}); err != nil {
		t.Fatal(err)
	}
	saved := resultsMargin
	resultsMargin = 20 * time.Millisecond
	t.Cleanup(func() { resultsMargin = saved })

	a := strings.Repeat("a", 40)
	res := failedAfterCalls(t, a, 1, 2)
	publishResult(t, js, res, 1)
	failed := time.Now()
	body := `{"requestId":"lost-1","machineId":"` + a + `"}`
	publishDead(t, js, offboard.CodeAPIError, body) // 1: its failure
	time.Sleep(time.Second)                         // well past resultsMargin, within the duplicate window
	// 2: sent again, answered from the ledger: its result a repeat.
	ack, err := js.Publish(t.Context(), offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID(offboard.ResultMsgID("contoso", "lost-1", 1)))
	if err != nil || !ack.Duplicate {
		t.Fatalf("the copy's result: %+v, %v; want a repeat", ack, err)
	}
	publishDead(t, js, offboard.CodeAPIError, body)
	s, err := js.Stream(t.Context(), offboard.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(t.Context(), 1); err != nil { // the first failure's dead letter
		t.Fatal(err)
	}
	time.Sleep(time.Until(failed.Add(ttl + 200*time.Millisecond))) // the ledger forgets the entry of the failure

	wantCalledRequestRefused(t, nc.ConnectedUrl())
}
