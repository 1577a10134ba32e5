package worker

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusLookalikeIsAnsweredInvalid: a request with no body and a
// Status header looks, to every JetStream pull of the Go client, like a
// status message of the server: the pull drops it (100), or ends as if
// the stream had nothing more (404, 408), or fails ("nats: consumer
// deleted", 409). Neither the tenant's consumer nor the unrouted one ever
// hands it to the worker; unacked, the server delivers it again every ack
// wait, for good. Each one, a tenant's, a bulk one and one of a tenant
// nobody serves, is answered invalid_request once, with a dead letter that
// does not look like a status message itself, and leaves the stream; a
// request published meanwhile is served as usual.
func TestStatusLookalikeIsAnsweredInvalid(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) { o.StatsEvery = 15 * time.Second })
	nc := e.js.Conn()
	nobody := make(chan offboard.Result, 16)
	rsub, err := nc.Subscribe("mde.offboard.result.nobody", func(m *nats.Msg) {
		var r offboard.Result
		if json.Unmarshal(m.Data, &r) == nil {
			nobody <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rsub.Unsubscribe() })
	dead := make(chan *nats.Msg, 16)
	dsub, err := nc.ChanSubscribe("mde.offboard.dead.>", dead)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dsub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	e.publish(t, "r-1")
	lookalikes := []struct{ subject, status, description string }{
		{"mde.offboard.request.contoso", "409", "Consumer Deleted"},
		{"mde.offboard.request.contoso", "404", "No Messages"},
		{"mde.offboard.request.contoso", "100", "Idle Heartbeat"},
		{"mde.offboard.request.contoso.bulk", "408", "Request Timeout"},
		{"mde.offboard.request.nobody", "409", "Consumer Deleted"},
	}
	want := map[uint64]string{} // request seq: subject
	for _, l := range lookalikes {
		m := nats.NewMsg(l.subject)
		m.Header.Set("Status", l.status)
		m.Header.Set("Description", l.description)
		ack, err := e.js.PublishMsg(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		want[ack.Sequence] = l.subject
	}

	got := map[uint64]int{}
	created := map[string]bool{}
	// results waits, turning the stats loop, until every lookalike is
	// answered and the given requests are created.
	results := func(ids ...string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		done := func() bool {
			for _, id := range ids {
				if !created[id] {
					return false
				}
			}
			return len(got) == len(want)
		}
		for !done() {
			select {
			case r := <-e.results:
				if r.RequestID != "" {
					if r.Outcome != offboard.OutcomeCreated {
						t.Fatalf("%s: %s %+v, want created", r.RequestID, r.Outcome, r.Error)
					}
					created[r.RequestID] = true
					continue
				}
				checkLookalikeResult(t, r, want)
				got[r.RequestSeq]++
			case r := <-nobody:
				checkLookalikeResult(t, r, want)
				got[r.RequestSeq]++
			case <-tick.C:
				e.clock.Advance(15 * time.Second) // the stats loop's turns
			case <-deadline:
				t.Fatalf("after 30s: lookalikes answered %v of %v; created %v of %v", got, want, created, ids)
			}
		}
	}
	results("r-1")
	// The tenant goes on.
	e.publishPrio(t, "r-2", offboard.Normal) // another device
	results("r-2")
	// More turns: nothing is answered twice.
	for range 10 {
		e.clock.Advance(15 * time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	for {
		select {
		case r := <-e.results:
			got[r.RequestSeq]++
			continue
		case r := <-nobody:
			got[r.RequestSeq]++
			continue
		default:
		}
		break
	}
	for seq := range want {
		if got[seq] != 1 {
			t.Errorf("request %d: %d results, want 1", seq, got[seq])
		}
	}

	letters := map[uint64]int{}
	for len(dead) > 0 {
		m := <-dead
		seq, _ := strconv.ParseUint(m.Header.Get(offboard.HeaderRequestSeq), 10, 64)
		letters[seq]++
		if code := m.Header.Get(offboard.HeaderErrorCode); code != offboard.CodeInvalidRequest {
			t.Errorf("dead letter of %d: code %q, want %s", seq, code, offboard.CodeInvalidRequest)
		}
		if subj := m.Header.Get(offboard.HeaderOriginalSubject); subj != want[seq] {
			t.Errorf("dead letter of %d: original subject %q, want %q", seq, subj, want[seq])
		}
		if s := m.Header.Get("Status"); s != "" {
			t.Errorf("dead letter of %d has Status %q: it looks like a status message to whoever reads the dead letters", seq, s)
		}
		if m.Header.Get(offboard.HeaderOriginalPrefix+"Status") == "" {
			t.Errorf("dead letter of %d: the request's Status header is not kept", seq)
		}
	}
	for seq := range want {
		if letters[seq] != 1 {
			t.Errorf("request %d: %d dead letters, want 1", seq, letters[seq])
		}
	}
	waitRequestsGone(t, e.js)
	checkNothingPending(t, e.js)
}

// waitRequestsGone waits, 10 s at most, until the request stream holds no
// request: each was answered, acked and deleted.
func waitRequestsGone(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	requests, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := requests.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests left in the stream, want none", info.State.Msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkLookalikeResult checks the answer of a status lookalike.
func checkLookalikeResult(t *testing.T, r offboard.Result, want map[uint64]string) {
	t.Helper()
	subject, ok := want[r.RequestSeq]
	if !ok {
		t.Fatalf("result of request %d (%s %s %+v): not one of the lookalikes %v", r.RequestSeq, r.RequestID, r.Outcome, r.Error, want)
	}
	tenant, prio, _ := offboard.Subjects{}.ParseRequest(subject)
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeInvalidRequest {
		t.Errorf("request %d: %s %+v, want failed %s", r.RequestSeq, r.Outcome, r.Error, offboard.CodeInvalidRequest)
	}
	if r.Tenant != tenant || r.Priority != prio {
		t.Errorf("request %d: tenant %q priority %q, want %q %q", r.RequestSeq, r.Tenant, r.Priority, tenant, prio)
	}
}

// checkNothingPending checks that no consumer of the request stream holds
// a delivered request unacked: none is left to come back at its ack wait.
func checkNothingPending(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	stream, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	for name := range stream.ConsumerNames(t.Context()).Name() {
		cons, err := stream.Consumer(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending != 0 {
			t.Errorf("consumer %s: %d requests delivered and unacked, want none", name, info.NumAckPending)
		}
	}
}
