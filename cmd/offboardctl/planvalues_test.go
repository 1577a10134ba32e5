package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPlanValueWithControlCharactersRefused: an --os or --health value
// holding a character one does not see (a line break or tab pasted with
// it, a zero-width space) is none of Defender's, and matches no device.
// It went into the inventory's filter as it was, and the plan came back
// empty without a word; a plan request of another publisher so too. Now
// offboardctl exits 2 naming the flag, and the worker answers
// invalid_request without reading the inventory.
func TestPlanValueWithControlCharactersRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"Windows\n11", "Windows11\t", "Windows11\u200b", "Win\x7fdows11"} {
		var out, errb bytes.Buffer
		args := []string{"--nats-url", "nats://127.0.0.1:1", "campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", t.TempDir() + "/p.csv", "--os", v}
		if code := run(args, &out, &errb); code != exitUsage || !bytes.Contains(errb.Bytes(), []byte("--os")) || bytes.Count(errb.Bytes(), []byte("\n")) != 1 {
			t.Errorf("--os %q: exit %d, stderr %q; want exit %d naming --os in one line", v, code, errb.String(), exitUsage)
		}
	}

	e := setupPlan(t, worker.PlanOptions{})
	nc, err := nats.Connect(e.app.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, req := range []offboard.PlanRequest{
		{InactiveFor: 90 * 24 * time.Hour, OS: []string{"Windows\n11"}},
		{InactiveFor: 90 * 24 * time.Hour, OS: []string{""}},
		{InactiveFor: 90 * 24 * time.Hour, OS: []string{"Windows11\u202e"}},
	} {
		data, _ := json.Marshal(req)
		m, err := nc.Request(offboard.Subjects{}.Plan("contoso"), data, 5*time.Second)
		if err != nil {
			t.Fatalf("%q: %v", req.OS, err)
		}
		var reply offboard.PlanReply
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.State != offboard.PlanFailed || reply.Error == nil || reply.Error.Code != offboard.PlanCodeInvalid {
			t.Errorf("%q: reply %s (%v), want %s %s", req.OS, m.Data, err, offboard.PlanFailed, offboard.PlanCodeInvalid)
		}
	}
	if n := e.calls()[mde.APIMachines]; n != 0 {
		t.Errorf("%d inventory reads, want none", n)
	}
}
