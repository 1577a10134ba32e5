package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// What TestNATSAccountsEndToEnd tries that accounts.conf must not let
// happen, beyond a publish or subscription the server refuses.

// checkReflectedReplies has publisher cmdb (of tenant contoso) send its
// request again, each time with a reply subject of account MDE it may not
// publish on: JetStream sends its acknowledgement to the reply subject,
// which must reach none of them. The copies are duplicates of request
// (the stream stores them once), so the worker has nothing more to do.
// The test's worker serves contoso only and offboardctl has not run yet:
// nothing else writes where this looks.
func checkReflectedReplies(ctx context.Context, t *testing.T, hostPort string, cmdb *client, request offboard.Request) {
	t.Helper()
	s := offboard.Subjects{}
	stored := map[string]string{ // reply subject: the stream it would be stored in
		s.Quota("contoso-gov"):                     offboard.StreamQuota,
		s.Budget("contoso-gov"):                    offboard.StreamBudget,
		s.Result("contoso-gov"):                    offboard.StreamResults,
		s.Control("contoso-gov"):                   offboard.StreamResults,
		s.Action("contoso-gov"):                    offboard.StreamResults,
		s.Dead("contoso-gov"):                      offboard.StreamDead,
		s.Request("contoso-gov", offboard.Normal):  offboard.StreamRequests,
		s.Request("contoso-gov", offboard.Bulk):    offboard.StreamRequests,
		"$KV.MDE_OFFBOARD_LEDGER.r.contoso-gov.eA": "KV_" + offboard.BucketLedger,
		"$KV.MDE_OFFBOARD_REPLICAS.reflected":      "KV_MDE_OFFBOARD_REPLICAS",
		"$O.MDE_OFFBOARD_PLANS.M.cmVmbGVjdGVk":     "OBJ_" + offboard.BucketPlans,
	}
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		// An operator's pause the publisher would lift.
		stored["$KV."+offboard.BucketControl+"."+control.PauseKey("contoso", p)] = "KV_" + offboard.BucketControl
	}
	// Not stored: what the worker and offboardctl listen on.
	worker := connectAs(t, hostPort, "mde-offboard-worker")
	ctl := connectAs(t, hostPort, "offboardctl")
	live := map[string]*nats.Subscription{}
	for c, subjects := range map[*client][]string{
		worker: {s.Working("reflected"), s.Plan("contoso-gov"), "_INBOX_worker.reflected"},
		ctl:    {"_INBOX_offboardctl.reflected"},
	} {
		for _, subject := range subjects {
			sub, err := c.nc.SubscribeSync(subject)
			if err != nil {
				t.Fatal(err)
			}
			live[subject] = sub
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// The JetStream API: a delete or purge with the acknowledgement as body.
	api := []string{
		"$JS.API.STREAM.DELETE." + offboard.StreamDead,
		"$JS.API.STREAM.PURGE.KV_" + offboard.BucketLedger,
		"$JS.API.CONSUMER.DELETE." + offboard.StreamRequests + "." + queue.ConsumerUnrouted,
		"$JS.API.CONSUMER.DELETE." + offboard.StreamRequests + "." + queue.ConsumerName("contoso", offboard.Normal),
	}

	data, err := json.Marshal(request)
	if err != nil {
		t.Fatal(err)
	}
	var replies []string
	for subject := range stored {
		replies = append(replies, subject)
	}
	for subject := range live {
		replies = append(replies, subject)
	}
	for _, reply := range append(replies, api...) {
		m := nats.NewMsg(s.Request("contoso", offboard.Normal))
		m.Reply, m.Data = reply, data
		m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID("contoso", request.RequestID, request.Attempt))
		if err := cmdb.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// Published last on the same connection, answered last: the stream
	// has sent every acknowledgement above. Its message id came through
	// the import: a duplicate.
	pjs, err := jetstream.New(cmdb.nc)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := offboard.Publish(ctx, pjs, s, "contoso", offboard.Normal, request)
	if err != nil {
		t.Fatalf("contoso-cmdb: %v", err)
	}
	if !ack.Duplicate {
		t.Errorf("request %s published again: stored again (seq %d), not a duplicate", request.RequestID, ack.Sequence)
	}
	// Where an acknowledgement would be stored or delivered, it would be
	// by now.
	time.Sleep(300 * time.Millisecond)

	wjs, err := jetstream.New(worker.nc)
	if err != nil {
		t.Fatal(err)
	}
	for subject, stream := range stored {
		st, err := wjs.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		switch m, err := st.GetLastMsgForSubject(ctx, subject); {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			t.Errorf("stream %s, %s: %v", stream, subject, err)
		default:
			t.Errorf("contoso-cmdb's reply stored on %s (stream %s, seq %d): %s", subject, stream, m.Sequence, m.Data)
		}
	}
	for subject, sub := range live {
		if m, err := sub.NextMsg(10 * time.Millisecond); err == nil {
			t.Errorf("contoso-cmdb's reply delivered on %s: %s", subject, m.Data)
		}
	}
	if _, err := wjs.Stream(ctx, offboard.StreamDead); err != nil {
		t.Errorf("stream %s after contoso-cmdb's replies: %v", offboard.StreamDead, err)
	}
	if st, err := wjs.Stream(ctx, "KV_"+offboard.BucketLedger); err != nil || st.CachedInfo().State.Msgs == 0 {
		t.Errorf("ledger after contoso-cmdb's replies: purged (%v)", err)
	}
	for _, name := range []string{queue.ConsumerUnrouted, queue.ConsumerName("contoso", offboard.Normal)} {
		if _, err := wjs.Consumer(ctx, offboard.StreamRequests, name); err != nil {
			t.Errorf("consumer %s after contoso-cmdb's replies: %v", name, err)
		}
	}
}

// checkPublishersApart checks that a publisher reads no other publisher's
// replies, even on the default inbox prefix both use: each is in an
// account of its own.
func checkPublishersApart(ctx context.Context, t *testing.T, hostPort string, cmdb *client) {
	t.Helper()
	sub, err := cmdb.nc.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := cmdb.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	gov := connectAs(t, hostPort, "contoso-gov-cmdb")
	js, err := jetstream.New(gov.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := offboard.Publish(ctx, js, offboard.Subjects{}, "contoso-gov", offboard.Normal,
		offboard.Request{RequestID: "gov-1", MachineID: "0123456789abcdef0123456789abcdef01234567", RequestedBy: "cmdb"}); err != nil {
		t.Fatalf("contoso-gov-cmdb: %v", err)
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("contoso-cmdb read %s on %s: contoso-gov-cmdb's reply", m.Data, m.Subject)
	}
}

// checkOperatorRefusals has offboardctl's user try what offboardctl never
// does: touch the worker's durable consumers (an update is a create on an
// existing name), delete, purge or change a stream, write the worker's
// journals and buckets, ack a request; and the worker's user publish a
// control change.
func checkOperatorRefusals(t *testing.T, hostPort string) (ctl, worker *client) {
	t.Helper()
	ctl = connectAs(t, hostPort, "offboardctl")
	const requests = offboard.StreamRequests
	var subjects []string
	for _, name := range []string{queue.ConsumerName("contoso", offboard.Normal), queue.ConsumerName("contoso", offboard.Bulk), queue.ConsumerUnrouted} {
		subjects = append(subjects,
			"$JS.API.CONSUMER.CREATE."+requests+"."+name,
			"$JS.API.CONSUMER.CREATE."+requests+"."+name+".mde.offboard.request.contoso",
			"$JS.API.CONSUMER.DELETE."+requests+"."+name,
			"$JS.API.CONSUMER.MSG.NEXT."+requests+"."+name)
	}
	s := offboard.Subjects{}
	subjects = append(subjects,
		"$JS.API.CONSUMER.CREATE."+requests, // a name in the body
		"$JS.API.CONSUMER.DURABLE.CREATE."+requests+"."+queue.ConsumerName("contoso", offboard.Normal),
		"$JS.API.STREAM.DELETE."+requests, "$JS.API.STREAM.PURGE."+requests, "$JS.API.STREAM.UPDATE."+requests,
		"$JS.API.STREAM.MSG.DELETE."+requests, "$JS.API.STREAM.DELETE."+offboard.StreamDead,
		"$JS.API.STREAM.PURGE.KV_"+offboard.BucketLedger, "$JS.API.STREAM.DELETE.KV_"+offboard.BucketControl,
		"$JS.ACK."+requests+".tenant-contoso.1.1.1.1.0",
		s.Quota("contoso"), s.Budget("contoso"), s.Result("contoso"), s.Dead("contoso"), s.Action("contoso"),
		"$KV.MDE_OFFBOARD_LEDGER.r.contoso.eA", "$KV.MDE_OFFBOARD_REPLICAS.x")
	for _, subject := range subjects {
		ctl.refused(t, "publish", subject, func() error { return ctl.nc.Publish(subject, []byte("{}")) })
	}
	worker = connectAs(t, hostPort, "mde-offboard-worker")
	worker.refused(t, "publish", s.Control("contoso"), func() error {
		return worker.nc.Publish(s.Control("contoso"), []byte("{}"))
	})
	return ctl, worker
}
