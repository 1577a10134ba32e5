package main

import (
	"encoding/json"
	"testing"
)

// TestStatusETALeavesOutACancelledCampaign: the worker answers a
// cancelled campaign's waiting requests cancelled, without a call, so
// status's ETA counts only the tenant's other requests: at 10 calls a
// minute, the 20 of another campaign (a minute), not those 20 and the
// cancelled campaign's 10 (two minutes). The backlog still counts all 30,
// which wait in the stream until a worker answers them.
func TestStatusETALeavesOutACancelledCampaign(t *testing.T) {
	t.Parallel()
	e := keepBesideCancelledWave(t)
	code, out, errs := e.ctl(t.Context(), "status", tenant, "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); code != exitOK || err != nil || len(sts) != 1 {
		t.Fatalf("status: exit %d, %v: %s %s", code, err, out, errs)
	}
	st := sts[0]
	if st.Backlog["bulk"] != 30 || st.ETA == nil || *st.ETA != 60 {
		eta := any(nil)
		if st.ETA != nil {
			eta = *st.ETA
		}
		t.Errorf("status: bulk backlog %d, ETA %v s; want 30 and 60 s: the cancelled campaign's 10 take no call", st.Backlog["bulk"], eta)
	}
}
