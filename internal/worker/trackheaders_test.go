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

// TestTrackingEventHeadersCountInItsSize: an action of an id 5,000
// characters long, read back Succeeded a little smaller than the room an
// event has beside its headers, is published cut down, on a server whose
// max payload is 128 KiB. Its message id carries the action id, larger
// than that room: counted apart from its headers, the event was published
// whole, refused at every look until maxAge, and the status change never
// reported.
func TestTrackingEventHeadersCountInItsSize(t *testing.T) {
	t.Parallel()
	nc, js := natstest.ConnectTo(t, natstest.StartWithMaxPayload(t, 128<<10))
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	id := "act-" + strings.Repeat("7", 5000)
	maxEvent := int(nc.MaxPayload()) - resultRoom
	api := scriptedFor(clock, "Succeeded")
	api.pad = eventPadFor(t, id, maxEvent-64)
	tr, log := newStreamTracker(js, ledger, &api, clock, maxEvent)
	runTracker(t, tr)
	action := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":"Pending"}`, id)
	if err := tr.track(t.Context(), &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), MachineAction: json.RawMessage(action)}); err != nil {
		t.Fatal(err)
	}
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return len(evs) > 0 && evs[len(evs)-1].Final
	})
	last := log.all()[len(log.all())-1]
	if last.Status != "Succeeded" || last.ActionID != id || strings.Contains(string(last.MachineAction), "troubleshootInfo") {
		t.Errorf("last event %s final=%v, action %.200s", last.Status, last.Final, last.MachineAction)
	}
}

// eventPadFor is the troubleshootInfo, in bytes, that makes the event of
// action id read back Succeeded (scriptedActions) size bytes long.
func eventPadFor(t *testing.T, id string, size int) int {
	t.Helper()
	ev := func(pad int) int {
		raw := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":"Succeeded","troubleshootInfo":%q}`, id, strings.Repeat("x", pad))
		data, err := marshalEvent(&ActionEvent{
			Tenant: "contoso", RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), ActionID: id, Status: "Succeeded",
			PreviousStatus: "Pending", MachineAction: json.RawMessage(raw),
			ObservedAt: time.Date(2026, 11, 24, 10, 3, 0, 0, time.UTC), Final: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(data)
	}
	return 1 + size - ev(1)
}
