package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// betweenReads is the test's JetStream with one step taken once, when a
// read of a second stream starts: between campaign status's read of the
// requests and that of the results (whichever comes first).
type betweenReads struct {
	jetstream.JetStream
	first string
	done  bool
	step  func()
}

func (b *betweenReads) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	if b.first == "" {
		b.first = stream
	}
	if stream != b.first && !b.done {
		b.done = true
		b.step()
	}
	return b.JetStream.OrderedConsumer(ctx, stream, cfg)
}

// A request answered while campaign status reads (a campaign draining, a
// cancelled one answered by the thousand a second) counts once, waiting
// or answered. The results were read before the requests: a request
// answered between the two reads was in neither, and a campaign of
// 100,000 rows read 600 to 800 short while its cancel drained.
func TestCampaignStatusCountsARequestAnsweredWhileItReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	e.stopWorker() // the request waits, behind the consumers it made
	if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
		offboard.Request{RequestID: "camp-000001", MachineID: e.machines[0].ID, Source: "campaign:camp"}); err != nil {
		t.Fatal(err)
	}
	js := &betweenReads{JetStream: e.js, step: func() {
		e.startWorker()
		e.waitFor("the result", time.Minute, func() bool { return len(e.results()) == 1 })
		e.waitFor("the request answered", time.Minute, func() bool { return e.requestsWaiting() == 0 })
	}}
	c := &cli{}
	st, err := c.campaignStatus(t.Context(), js, tenant, "camp")
	if err != nil {
		t.Fatal(err)
	}
	if !js.done {
		t.Fatal("the request was not answered between the reads")
	}
	if st.Answered != 1 || st.Created != 1 || st.Waiting != 0 {
		t.Errorf("answered %d (created %d), waiting %d; want the request counted answered once", st.Answered, st.Created, st.Waiting)
	}
}
