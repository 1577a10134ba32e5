package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A copy of a request published on a subject of no request form
// (request.<tenant>.urgent) is answered invalid_request apart from the
// request, and its dead letter is not the request's latest: the request
// is retried from its own.
func TestDeadRetryOfACopyOnAnotherSubject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	late := mdesim.Machine{ID: randHex(20), ComputerDNSName: "late.contoso.local", OSPlatform: "Windows11"}
	body := `{"requestId":"chg-1","machineId":"` + late.ID + `"}`
	send := func(subject, msgID string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	send(offboard.Subjects{}.Request(tenant, offboard.Normal), "contoso:chg-1") // not there yet
	e.waitFor("chg-1's result", time.Minute, func() bool { return len(e.results()) == 1 })
	// Its dead letter first, as the retry's dead letter 1: it may be
	// stored after its result.
	e.waitFor("chg-1's dead letter", time.Minute, func() bool { return e.deadLetters() == 1 })
	send(offboard.Subjects{}.Request(tenant, offboard.Normal)+".urgent", "contoso:chg-1:urgent")
	e.waitFor("the copy's result", time.Minute, func() bool { return len(e.results()) == 2 })
	e.waitFor("the copy's dead letter", time.Minute, func() bool { return e.deadLetters() == 2 })
	e.sim.AddMachine(e.tenantID, late)

	code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitFailed || !strings.Contains(out, "retried chg-1 attempt 2 (dead letter 1,") ||
		!strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 1 not retried") {
		t.Fatalf("dead retry --all: exit %d: %s %s", code, out, errOut)
	}
	e.waitFor("the retry answered", time.Minute, func() bool { return len(e.results()) >= 3 && e.requestsWaiting() == 0 })
	if r := e.results()[2]; r.RequestID != "chg-1" || r.Attempt != 2 || r.Outcome != offboard.OutcomeCreated {
		t.Errorf("the retry's result: %s attempt %d %s", r.RequestID, r.Attempt, r.Outcome)
	}
}
