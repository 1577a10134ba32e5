package app

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnreadableLedgerEntryIsAnswered: a request id whose ledger entry
// cannot be read (written by hand, cut short, a result that is not one)
// is answered failed, internal_error, with a dead letter and no call,
// where it used to come back every five seconds for ever, never answered.
// A retry of it is worked on as usual.
func TestUnreadableLedgerEntryIsAnswered(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 3})
	c := e.collect("mde.offboard.result.>")
	kv, err := e.js.KeyValue(t.Context(), offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	tt := e.tenants["contoso"]
	for i, value := range []string{
		`{"state":"done","res`,
		`{"state":"done","seq":1,"result":"created"}`,
		`{"state":"done","seq":1,"result":null}`,
	} {
		id := "unreadable-" + string(rune('a'+i))
		key := "r.contoso." + base64.RawURLEncoding.EncodeToString([]byte(id))
		if _, err := kv.Put(t.Context(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
		m := tt.machines[i]
		res := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID})
		if res.Outcome != offboard.OutcomeFailed || res.Error == nil || res.Error.Code != offboard.CodeInternal {
			t.Fatalf("entry %s: answered %s (error %+v), want failed, internal_error", value, res.Outcome, res.Error)
		}
		if n := e.offboardCalls(tt.tenantID, m.ID); n != 0 {
			t.Fatalf("entry %s: %d offboard calls, want none", value, n)
		}
		before := len(c.snapshot()["contoso/"+id])
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID, "attempt": 2}, "contoso:"+id+":2")
		eventually(t, 20*time.Second, id+"'s retry answered", func() bool { return len(c.snapshot()["contoso/"+id]) > before })
		retry := c.snapshot()["contoso/"+id][before]
		if retry.Outcome != offboard.OutcomeCreated || retry.Attempt != 2 {
			t.Fatalf("entry %s: retry answered %s at attempt %d, want created at 2", value, retry.Outcome, retry.Attempt)
		}
	}
	if n := len(e.deadLetters()); n != 3 {
		t.Errorf("%d dead letters, want 3", n)
	}
}
