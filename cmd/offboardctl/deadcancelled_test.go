package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetryAllLeavesOutCancelledCampaigns: a campaign's cancel stands
// for good, and a retry of a request it cancelled is cancelled again,
// with a result and a dead letter more. dead retry --all without --code
// leaves such dead letters out and says how many, with the flag that
// retries them (a cancel mark deleted by hand); --code cancelled does.
func TestDeadRetryAllLeavesOutCancelledCampaigns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	e.stopWorker() // dead letters published by hand
	dead := func(body, code string) { e.publishBulkDead(t, body, code) }
	dead(`{"requestId":"wave-000001","machineId":"`+strings.Repeat("a", 40)+`","source":"campaign:wave"}`, offboard.CodeCancelled)
	dead(`{"requestId":"x-2","machineId":"`+strings.Repeat("b", 40)+`"}`, offboard.CodeAPIError)
	dead(`{"requestId":"wave-000003","machineId":"`+strings.Repeat("c", 40)+`","source":"campaign:wave"}`, offboard.CodeCancelled)
	retries := func() []string {
		var ids []string
		err := scan(t.Context(), e.js, offboard.StreamRequests, offboard.Subjects{}.Request(tenant, offboard.Bulk), func(m jetstream.Msg) {
			ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "1 retried") ||
		!strings.Contains(out, "2 dead letters of cancelled campaigns left out") || !strings.Contains(out, "--code cancelled") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if got := retries(); len(got) != 1 || got[0] != "contoso:x-2:2" {
		t.Fatalf("retries %v, want x-2's alone", got)
	}
	code, out, errOut = e.ctl(t.Context(), "dead", "retry", tenant, "--all", "--code", offboard.CodeCancelled)
	if code != exitOK || !strings.Contains(out, "2 retried") || strings.Contains(out, "left out") {
		t.Fatalf("--code cancelled: exit %d: %s %s", code, out, errOut)
	}
	if got := retries(); len(got) != 3 {
		t.Fatalf("retries %v, want the two cancelled too", got)
	}
}

// TestDeadRetryAllLeavesOutGuardRefusals: a guard's refusal is a
// decision, not a passing failure. dead retry --all without --code, run
// to retry the failures of an outage, leaves out the requests a guard
// refused and says how many, with the flag that retries them: retried,
// one whose guard was lifted since (a tag taken off the device) would
// offboard its device though nobody asked again. Before, --all retried
// them with the rest. --code blocked_by_policy retries them.
func TestDeadRetryAllLeavesOutGuardRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	e.stopWorker() // dead letters published by hand
	e.publishBulkDead(t, `{"requestId":"dc-1","machineId":"`+strings.Repeat("a", 40)+`"}`, offboard.CodeBlockedByPolicy)
	e.publishBulkDead(t, `{"requestId":"x-2","machineId":"`+strings.Repeat("b", 40)+`"}`, offboard.CodeAPIError)
	code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "1 retried") ||
		!strings.Contains(out, "1 dead letter refused by a guard left out") || !strings.Contains(out, "--code blocked_by_policy") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var ids []string
	err := scan(t.Context(), e.js, offboard.StreamRequests, offboard.Subjects{}.Request(tenant, offboard.Bulk), func(m jetstream.Msg) {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	})
	if err != nil || len(ids) != 1 || ids[0] != "contoso:x-2:2" {
		t.Fatalf("retries %v (%v), want x-2's alone", ids, err)
	}
	code, out, errOut = e.ctl(t.Context(), "dead", "retry", tenant, "--all", "--code", offboard.CodeBlockedByPolicy)
	if code != exitOK || !strings.Contains(out, "1 retried") || strings.Contains(out, "left out") {
		t.Fatalf("--code blocked_by_policy: exit %d: %s %s", code, out, errOut)
	}
}
