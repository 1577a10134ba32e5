package app

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// deadLetters reads every dead letter stored so far, in order.
func (e *env) deadLetters() []jetstream.Msg {
	e.t.Helper()
	n := e.streamMsgs(offboard.StreamDead)
	cons, err := e.js.OrderedConsumer(e.t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []jetstream.Msg
	for range n {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestResentFailedRequestGetsItsOwnDeadLetter: a publisher sends a failed
// request again, attempt 1 again, under a new message id (after the
// duplicate window, or a different id). It is answered from the ledger
// with the stored failure, no call, one result; and, failed, it is copied
// to the dead letters as the contract says of every failed request: the
// copy is of the message sent again, under its own sequence (it used to
// carry the first request's Mde-Request-Seq), so that it can be inspected
// and retried even once the first dead letter has aged out of its stream.
func TestResentFailedRequestGetsItsOwnDeadLetter(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	c := e.collect("mde.offboard.result.contoso")
	body := map[string]any{"requestId": "nf-1", "machineId": strings.Repeat("e", 40)}
	first := e.publish("mde.offboard.request.contoso", body, "contoso:nf-1")
	got := c.wait(t, 1, 30*time.Second)["contoso/nf-1"]
	if len(got) != 1 || got[0].Error == nil || got[0].Error.Code != offboard.CodeMachineNotFound {
		t.Fatalf("results of nf-1: %+v, want one machine_not_found", got)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	calls := e.apiCalls("offboard")

	resent := e.publish("mde.offboard.request.contoso", body, "contoso:nf-1:resent")
	if resent.Duplicate {
		t.Fatal("the resent request was dropped as a repeat")
	}
	eventually(t, 20*time.Second, "resent request answered", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if n := e.apiCalls("offboard"); n != calls {
		t.Errorf("%d offboard calls for the resent request, want none", n-calls)
	}
	if rs := c.wait(t, 1, time.Second)["contoso/nf-1"]; len(rs) != 1 {
		t.Errorf("%d results of nf-1, want the stored one, once: %+v", len(rs), rs)
	}
	dead := e.deadLetters()
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2: the first request's and the one sent again", len(dead))
	}
	for i, want := range []struct {
		seq   uint64
		msgID string
	}{{first.Sequence, "contoso:nf-1"}, {resent.Sequence, "contoso:nf-1:resent"}} {
		h := dead[i].Headers()
		if h.Get(offboard.HeaderRequestSeq) != strconv.FormatUint(want.seq, 10) || h.Get(jetstream.MsgIDHeader) != want.msgID {
			t.Errorf("dead letter %d headers %v, want request %d's (%s)", i+1, h, want.seq, want.msgID)
		}
	}
}

// TestLedgerFailedWithoutItsDeadLetterIsDeadLettered: the ledger's final
// entry went out, the result and dead letter beside it did not (the server
// went down between them). The request comes back and is answered from the
// ledger; being the request the entry names, it sends its dead letter too,
// under its own sequence.
func TestLedgerFailedWithoutItsDeadLetterIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	seq := answeredWhileStopped(t, e, func(seq uint64) []byte {
		return []byte(`{"requestId":"r1","tenant":"contoso","outcome":"failed","attempt":1,` +
			`"error":{"code":"machine_not_found","message":"no such device"},"requestSeq":` + strconv.FormatUint(seq, 10) + `}`)
	})
	c := e.collect("mde.offboard.result.contoso")
	eventually(t, 20*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if rs := c.wait(t, 1, 5*time.Second)["contoso/r1"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeFailed {
		t.Errorf("results of r1: %+v, want the stored one, once", rs)
	}
	dead := e.deadLetters()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := dead[0].Headers()
	if h.Get(offboard.HeaderRequestSeq) != strconv.FormatUint(seq, 10) || h.Get(offboard.HeaderErrorCode) != offboard.CodeMachineNotFound {
		t.Errorf("dead letter headers %v, want request %d's, machine_not_found", h, seq)
	}
	if n := e.apiCalls("offboard"); n != 0 {
		t.Errorf("%d offboard calls for a request the ledger shows answered", n)
	}
}
