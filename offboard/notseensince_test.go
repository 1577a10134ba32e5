package offboard_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNotSeenSince: a request's notSeenSince is read as the time it
// writes, whatever its offset, and a request that carries one writes it
// back unchanged (a campaign row's request is marshalled, then checked);
// one later than the reader's now by more than ClockSkew is refused, one
// within it is taken.
func TestNotSeenSince(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	want := time.Date(2026, 8, 1, 9, 12, 0, 123456700, time.UTC)
	for _, v := range []string{"2026-08-01T09:12:00.1234567Z", "2026-08-01T11:12:00.1234567+02:00", "2026-08-01t09:12:00.1234567z"} {
		req, err := offboard.ParseRequest([]byte(`{"requestId":"r1","machineId":"`+id+`","notSeenSince":"`+v+`"}`), "contoso")
		if err != nil || !req.NotSeenSince.Equal(want) {
			t.Fatalf("%s: read %v (%v), want %v", v, req.NotSeenSince, err, want)
		}
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := offboard.ParseRequest(data, "contoso")
		if err != nil || !again.NotSeenSince.Equal(want) {
			t.Fatalf("%s written as %s: read %v (%v)", v, data, again.NotSeenSince, err)
		}
	}
	if data, _ := json.Marshal(offboard.Request{RequestID: "r1", MachineID: id}); strings.Contains(string(data), "notSeenSince") {
		t.Errorf("a request without notSeenSince writes one: %s", data)
	}
	req := offboard.Request{RequestID: "r1", MachineID: id, NotSeenSince: want}
	for _, tc := range []struct {
		now     time.Time
		wantErr bool
	}{
		{now: want.Add(90 * 24 * time.Hour)},
		{now: want},
		{now: want.Add(-offboard.ClockSkew)},
		{now: want.Add(-offboard.ClockSkew - time.Nanosecond), wantErr: true},
		{now: want.Add(-24 * time.Hour), wantErr: true},
	} {
		err := req.CheckTime(tc.now)
		if (err != nil) != tc.wantErr || err != nil && !strings.Contains(err.Error(), "notSeenSince 2026-08-01T09:12:00.1234567Z is in the future") {
			t.Errorf("now %v: %v, want an error: %v", tc.now, err, tc.wantErr)
		}
	}
	if err := (offboard.Request{RequestID: "r1", MachineID: id}).CheckTime(time.Time{}); err != nil {
		t.Errorf("a request without notSeenSince: %v", err)
	}
}
