package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelPassGivesBackInOrder: a cancel lands while a pause holds
// 190 normal requests, then 12 rows of the cancelled campaign, then 50
// other requests. A pass sets the first 190 aside, answers the rows its
// free slots take, and the next pass follows at once, pulling the
// requests given back first again. They keep their order: once the pause
// lifts, the first three called are the first three published. Before,
// a pass sent its naks and the next one pulled without waiting for the
// server to have taken them back: it got requests published later
// first, and gave everything back in that order.
func TestCancelPassGivesBackInOrder(t *testing.T) {
	t.Parallel()
	board := newSwitchboard()
	e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) { o.Control = board })
	board.pause("contoso", offboard.Normal)
	board.pause("contoso", offboard.Bulk)
	for i := range 190 {
		e.publishPrio(t, fmt.Sprintf("n-%03d", i+1), offboard.Normal)
	}
	rows := e.publishRows(t, "wave1", 12, offboard.Normal)
	for i := range 50 {
		e.publishPrio(t, fmt.Sprintf("m-%03d", i+1), offboard.Normal)
	}
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1")
	e.wantCancelled(t, rows)
	time.Sleep(300 * time.Millisecond) // the passes after it
	board.resume("contoso", offboard.Normal)
	board.resume("contoso", offboard.Bulk)
	for i := range 3 {
		want := fmt.Sprintf("n-%03d", i+1)
		r := e.nextResult(t, want)
		if r.RequestID != want || r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s %+v, want %s created: the requests given back keep their order", r.RequestID, r.Outcome, r.Error, want)
		}
		e.clock.Advance(time.Hour) // the next call's place
	}
}

// TestResumeDuringACancelPassKeepsTheOrder: a pause of both priorities
// holds 190 normal requests and 12 bulk rows of a campaign that is
// cancelled; the pause is lifted as soon as the rows are answered, while
// the last pass pulls the normal requests set aside again. The first
// three requests called are the first three published. Before, the
// resume cut that pass short: the requests it had set aside went back
// behind those it had not pulled again yet, and a later request was
// called first.
func TestResumeDuringACancelPassKeepsTheOrder(t *testing.T) {
	t.Parallel()
	board := newSwitchboard()
	e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) { o.Control = board })
	board.pause("contoso", offboard.Normal)
	board.pause("contoso", offboard.Bulk)
	for i := range 190 {
		e.publishPrio(t, fmt.Sprintf("n-%03d", i+1), offboard.Normal)
	}
	rows := e.publishRows(t, "wave1", 12, offboard.Bulk)
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave1")
	e.wantCancelled(t, rows)
	board.resume("contoso", offboard.Normal)
	board.resume("contoso", offboard.Bulk)
	for i := range 3 {
		want := fmt.Sprintf("n-%03d", i+1)
		if r := e.resultOnceTheQuotaFrees(t, want); r.RequestID != want || r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s %+v, want %s created: the requests given back keep their order", r.RequestID, r.Outcome, r.Error, want)
		}
	}
}
