package worker

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingFirstEventOfAnActionCreatedWithoutAStatus: the API may
// answer any member of an action null (MDE-API.md), the status of the
// action an offboard created too. Its first event says Pending, as the
// contract has it, and the looks that read Pending, then Succeeded, add
// Succeeded alone. Before, the first event had an empty status, under
// the message id action:contoso:act-1: with nothing after the last
// colon, and Pending followed as a change from that empty status.
func TestTrackingFirstEventOfAnActionCreatedWithoutAStatus(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	tr, log, clock := streamTracking(t, js, 0, "Pending", "Pending", "Succeeded")
	for _, status := range []string{`null`, `""`} {
		id := "act-" + map[string]string{`null`: "1", `""`: "2"}[status]
		action := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":%s}`, id, status)
		if err := tr.track(t.Context(), &offboard.Result{RequestID: "r-" + id, MachineID: fmt.Sprintf("%040x", 1), MachineAction: json.RawMessage(action)}); err != nil {
			t.Fatal(err)
		}
	}
	trackUntil(t, clock, func() bool {
		final := 0
		for _, ev := range log.all() {
			if ev.Final {
				final++
			}
		}
		return final == 2
	})
	got, _ := storedActionEvents(t, js)
	slices.Sort(got)
	want := []string{
		"Pending(final=false, action:contoso:act-1:Pending)", "Pending(final=false, action:contoso:act-2:Pending)",
		"Succeeded(final=true, action:contoso:act-1:Succeeded)", "Succeeded(final=true, action:contoso:act-2:Succeeded)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events stored %q, want %q", got, want)
	}
}
