package worker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingAnActionNoEventCanCarry: an action whose id is 70,000
// characters long, on a server whose max payload is 128 KiB, fits a
// result, but no action event: the event names the id twice, in its
// actionId and in its message id, whatever is cut of the action. Its
// tracking is not started, so the request is acked. Before, starting it
// failed at each delivery, and the request, left for the tracking,
// came back every few seconds for ever.
func TestTrackingAnActionNoEventCanCarry(t *testing.T) {
	t.Parallel()
	nc, js := natstest.ConnectTo(t, natstest.StartWithMaxPayload(t, 128<<10))
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Succeeded")
	tr, log := newStreamTracker(js, ledger, &api, clock, int(nc.MaxPayload())-resultRoom)
	runTracker(t, tr)
	id := "act-" + strings.Repeat("7", 70000)
	action := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":"Pending"}`, id)
	res := &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), MachineAction: json.RawMessage(action)}
	if data, err := res.Marshal(); err != nil || int64(len(data)) > nc.MaxPayload()-resultRoom {
		t.Fatalf("the result takes %d bytes (%v), more than a message holds", len(data), err)
	}
	for range 2 { // the request delivered again finds the same
		if err := tr.track(t.Context(), res); err != nil {
			t.Fatalf("track: %.200v", err)
		}
	}
	if data, _, err := ledger.TrackedState(t.Context(), "contoso", id); err != nil || data != nil {
		t.Errorf("tracked state %.100s (%v), want none", data, err)
	}
	if evs := log.all(); len(evs) != 0 {
		t.Errorf("%d events published", len(evs))
	}
}
