package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPlanAnswersOnlyOnAnInbox: the worker answers a plan request on the
// reply subject the asker set. Set to a subject that only the worker may
// publish on (the quota journal, the ledger's bucket, the results), the
// worker would write its answer there for the asker: a plan's JSON in
// the quota journal reads as an entry no worker can read, which pauses
// the tenant. Such a request gets no answer, and one with an inbox does.
func TestPlanAnswersOnlyOnAnInbox(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{})
	nc := e.js(t).Conn()
	s := offboard.Subjects{}
	taken := []string{s.Quota("contoso"), "$KV.MDE_OFFBOARD_LEDGER.x", "$JS.API.STREAM.DELETE.MDE_OFFBOARD_REQUESTS", s.Result("contoso")}
	got := make(chan string, 16)
	for _, subj := range taken {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) { got <- m.Subject })
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	for _, subj := range taken {
		if err := nc.PublishMsg(&nats.Msg{Subject: s.Plan("contoso"), Reply: subj, Data: []byte(`{"inactiveFor": 0}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// An inbox is answered (the request is invalid: answered at once),
	// after the others were taken.
	if _, err := nc.Request(s.Plan("contoso"), []byte(`{"inactiveFor": 0}`), 5*time.Second); err != nil {
		t.Fatalf("plan request with an inbox: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case subj := <-got:
		t.Fatalf("the worker answered a plan request on %s", subj)
	case <-time.After(500 * time.Millisecond):
	}
}
