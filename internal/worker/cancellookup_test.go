package worker

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelReachesRequestWaitingForItsLookup: a campaign's row by name
// waiting for the read that finds its device (the hour's one read
// spent) is answered cancelled as the cancel lands, as one waiting for a
// guard read is: not left for redelivery with a warning, and answered
// cancelled only when it came back.
func TestCancelReachesRequestWaitingForItsLookup(t *testing.T) {
	t.Parallel()
	e := setupLoopWith(t, `["100/1m"]`, "      machines: [\"1/1h\"]\n", RetryPolicy{})
	e.publishByName(t, "n-0", offboard.Normal)
	e.wantCreated(t, "n-0") // its lookup spent the hour's one read
	id := campaign.RequestID("wave1", 1)
	e.publishByName(t, id, offboard.Bulk)
	e.waitInFlight(t, 1) // waiting for its read
	e.cancelCampaign(t, "wave1")
	if r := e.nextResult(t, id); r.RequestID != id || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
		t.Fatalf("result %s %s %+v, want %s cancelled", r.RequestID, r.Outcome, r.Error, id)
	}
	cons, err := e.js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Bulk))
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := info.Delivered.Consumer; n != 1 {
		t.Errorf("%s delivered %d times, want once: it was left for redelivery and answered when it came back", id, n)
	}
}
