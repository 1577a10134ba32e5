package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelFarBehindDeletesNoRequestOfAStreamMadeAgain: a cancel's read
// past the requests its pass set aside holds a pull's worth of a
// cancelled campaign's rows in memory while it answers them. The request
// stream is deleted and made again meanwhile (an operator applying
// deploy/nats; here while NATS is silent to the worker for a moment),
// and another campaign's rows are published to the new stream, at the
// places the old one's rows had. The rows answered after that are not
// deleted in the new stream: every one of the new campaign's rows is
// still there, to be answered. Before, the read deleted them by their
// places, unanswered.
func TestCancelFarBehindDeletesNoRequestOfAStreamMadeAgain(t *testing.T) {
	t.Parallel()
	var sil *natstest.Silencer
	e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) {
		sil = natstest.NewSilencer(t, strings.TrimPrefix(o.JS.Conn().ConnectedUrl(), "nats://"))
		nc, err := nats.Connect(sil.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if o.JS, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		if o.Ledger, err = queue.NewLedger(t.Context(), o.JS); err != nil {
			t.Fatal(err)
		}
		if o.Router, err = queue.NewRouter(nc, o.Settings.Subjects); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = o.Router.Close() })
	})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	const others, rows = withdrawScan, 1000
	ids := make([]string, 0, others+rows)
	for i := range others {
		ids = append(ids, campaign.RequestID("wave1", i+1))
	}
	for i := range rows {
		ids = append(ids, campaign.RequestID("wave2", i+1))
	}
	e.publishMany(t, ids, offboard.Bulk)
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave2")
	if r := <-e.results; r.Error == nil || r.Error.Code != offboard.CodeCancelled {
		t.Fatalf("result %s %s %+v, want one of wave2's cancelled", r.RequestID, r.Outcome, r.Error)
	}
	sil.Silence()
	if err := e.js.DeleteStream(t.Context(), offboard.StreamRequests); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateStream(t.Context(), queue.Settings{Tenants: []string{"contoso"}}.WithDefaults().Streams()[0]); err != nil {
		t.Fatal(err)
	}
	fresh := make([]string, 0, others+rows)
	for i := range others + rows {
		fresh = append(fresh, campaign.RequestID("wave3", i+1))
	}
	e.publishMany(t, fresh, offboard.Bulk)
	sil.Resume()
	// The read answers the rows it holds, then finds its consumer gone.
	for quiet := false; !quiet; {
		select {
		case <-e.results:
		case <-time.After(2 * time.Second):
			quiet = true
		}
	}
	lane := offboard.Subjects{}.Request("contoso", offboard.Bulk)
	if n := e.storedCount(t, offboard.StreamRequests, lane); n != others+rows {
		t.Errorf("%d of wave3's %d requests in the stream made again, want all: the others were deleted unanswered", n, others+rows)
	}
}
