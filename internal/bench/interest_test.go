package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// BenchmarkInterestAcks measures what an ack costs the NATS server on a
// stream shaped like the request stream (interest retention, on disk), as
// the number of tenants, hence of consumers, grows: two filtered
// consumers per tenant and one over every request, as the worker has.
// 2000 requests of one tenant are taken and acked by its consumer and by
// the one over everything, as the worker and its unrouted consumer do;
// the other tenants are idle. Under interest retention the server
// checks, for every ack, whether any other consumer of the stream still
// needs the message, under the stream's lock: the rate falls as consumers
// are added, whatever the worker does. Under limits retention (the
// request stream's now) the tenant's consumer also deletes each request
// after its ack, as the worker does: one more round trip, at a cost that
// does not grow with the consumers.
func BenchmarkInterestAcks(b *testing.B) {
	for _, retention := range []jetstream.RetentionPolicy{jetstream.InterestPolicy, jetstream.LimitsPolicy} {
		for _, tenants := range []int{1, 100, 500, 1000} {
			b.Run(fmt.Sprintf("retention=%s/tenants=%d", retention, tenants), func(b *testing.B) {
				rate := interestAcks(b, retention, tenants, envInt(b, "BENCH_INTEREST_N", 2000))
				b.Logf("%s retention, %d tenants, %d consumers: %.0f requests/s acked by both consumers (%.0f µs per request)",
					retention, tenants, 2*tenants+1, rate, 1e6/rate)
				b.ReportMetric(rate, "requests/s")
			})
		}
	}
}

func interestAcks(b *testing.B, retention jetstream.RetentionPolicy, tenants, n int) float64 {
	b.Helper()
	_, js := natstest.Connect(b)
	ctx := b.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "INTEREST", Subjects: []string{"req.>"}, Retention: retention,
		Storage: jetstream.FileStorage, MaxConsumers: 2*tenants + 1,
	}); err != nil {
		b.Fatal(err)
	}
	consumer := func(name, filter string) jetstream.Consumer {
		cons, err := js.CreateOrUpdateConsumer(ctx, "INTEREST", jetstream.ConsumerConfig{
			Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: -1,
		})
		if err != nil {
			b.Fatal(err)
		}
		return cons
	}
	all := consumer("all", "req.>")
	var first jetstream.Consumer
	for i := range tenants {
		t := fmt.Sprintf("t%04d", i)
		cons := consumer("tenant-"+t, "req."+t)
		consumer("bulk-"+t, "req."+t+".bulk")
		if i == 0 {
			first = cons
		}
	}
	for i := range n {
		if _, err := js.PublishAsync("req.t0000", fmt.Appendf(nil, "request %d", i)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()

	start := time.Now()
	done := make(chan error, 2)
	stream, err := js.Stream(ctx, "INTEREST")
	if err != nil {
		b.Fatal(err)
	}
	for _, cons := range []jetstream.Consumer{first, all} {
		deletes := retention == jetstream.LimitsPolicy && cons == first
		go func() {
			left := n
			for left > 0 {
				batch, err := cons.Fetch(min(left, 256), jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					done <- err
					return
				}
				got := 0
				for m := range batch.Messages() {
					got++
					// As the worker: the ack, then the delete.
					if err := m.DoubleAck(ctx); err != nil {
						done <- err
						return
					}
					if deletes {
						meta, err := m.Metadata()
						if err == nil {
							err = stream.DeleteMsg(ctx, meta.Sequence.Stream)
						}
						if err != nil {
							done <- err
							return
						}
					}
					left--
				}
				if got == 0 && retention == jetstream.LimitsPolicy && !deletes {
					// The tenant's consumer deleted the rest before this
					// one was delivered them: nothing is left to read.
					info, err := stream.Info(ctx)
					if err != nil {
						done <- err
						return
					}
					if info.State.Msgs == 0 {
						break
					}
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
