package worker

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingStatusWithWhiteSpaceIsStoredOnce: the API answering
// "Succeeded\n", then "Succeeded", for a Pending action leaves the results
// stream with one final Succeeded event. Taken as a status of its own,
// "Succeeded\n" was published, not final, under a message id the NATS
// client sent trimmed, the final Succeeded's: the stream dropped that one
// as a repeat, and the tracking ended with no final event stored.
func TestTrackingStatusWithWhiteSpaceIsStoredOnce(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	tr, log, clock := streamTracking(t, js, 0, "Succeeded\n", "Succeeded")
	action := `{"id":"act-1","type":"Offboard","status":"Pending"}`
	if err := tr.track(t.Context(), &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), MachineAction: json.RawMessage(action)}); err != nil {
		t.Fatal(err)
	}
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return len(evs) > 0 && evs[len(evs)-1].Final
	})
	got, final := storedActionEvents(t, js)
	want := []string{"Pending(final=false, action:contoso:act-1:Pending)", "Succeeded(final=true, action:contoso:act-1:Succeeded)"}
	if !slices.Equal(got, want) || final != 1 {
		t.Errorf("events stored %q, want %q", got, want)
	}
}
