package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// BenchmarkOverhead measures what the worker costs per request when the
// API is no limit: no quota (huge limits in the simulator and the tenants
// file) and no simulator latency. The requests wait in the stream before
// the worker starts; throughput runs from the first stored result to the
// last (the results stream's own timestamps). A bare JetStream loop over
// the same NATS server, with the same message count and sizes, gives the
// floor: a pull consumer per tenant, one message at a time per goroutine
// (as many goroutines as the worker's maxInFlight), the result published
// and acknowledged by its stream, then the request double-acked.
func BenchmarkOverhead(b *testing.B) {
	const inFlight = 4 // the worker's default maxInFlight
	n := envInt(b, "BENCH_OVERHEAD_N", 5000)
	names := tenantNames("t", 4)
	per := (n + len(names) - 1) / len(names)
	n = per * len(names)
	h := newHarness(b, options{tenants: names, machines: per, unlimited: true})

	// The worker creates streams and consumers, stops, and is started again
	// over the waiting requests.
	h.prepare(time.Minute)
	reqs := requests(h.tenants, per, false)
	if _, err := h.publishAsync(reqs); err != nil {
		b.Fatal(err)
	}
	reqBytes := len(h.requestMsg(reqs[0]).Data)

	p := h.startWorker()
	workerRate, first, last, resultBytes := h.waitStream(b, streamResults, n, 5*time.Minute)
	st, err := readProcStats(p.pid())
	if err != nil {
		b.Fatal(err)
	}
	actions := 0
	for _, t := range h.tenants {
		actions += len(h.sim.Actions(t.id))
	}
	logs, panics := h.logSummary()
	if err := p.stop(20 * time.Second); err != nil {
		b.Fatal(err)
	}

	bareRate := h.bareLoop(b, names, per, reqBytes, resultBytes, inFlight)
	stepsRate := h.stepsLoop(b, names, per, reqBytes, resultBytes, inFlight)

	b.Logf("worker: %d requests over %d tenants in %v: %.0f requests/s (%.0f µs CPU per request including start, peak RSS %.1f MiB; %d actions); "+
		"bare JetStream loop: %.0f messages/s; worker/bare %.3f",
		n, len(names), last.Sub(first).Round(time.Millisecond), workerRate, float64(st.cpu.Microseconds())/float64(n), mb(st.hwm), actions,
		bareRate, workerRate/bareRate)
	b.Logf("the worker's steps by hand (ledger and journal entries, HTTPS call, result and ledger entry, ack, delete): %.0f requests/s; "+
		"steps/bare %.3f, worker/steps %.3f", stepsRate, stepsRate/bareRate, workerRate/stepsRate)
	b.Logf("request %d bytes, result %d bytes, maxInFlight %d; worker warnings: %s; panics in the logs: %d", reqBytes, resultBytes, inFlight, logs, panics)
	b.ReportMetric(workerRate, "worker-req/s")
	b.ReportMetric(bareRate, "bare-msg/s")
	b.ReportMetric(workerRate/bareRate, "worker/bare")
	b.ReportMetric(stepsRate, "steps-req/s")
	b.ReportMetric(workerRate/stepsRate, "worker/steps")
	b.ReportMetric(float64(st.cpu.Microseconds())/float64(n), "worker-cpu-us/req")
}

// waitStream waits until a stream holds n messages and returns the rate
// between its first and last message, their times, and the size of the
// last message's body.
func (h *harness) waitStream(b testing.TB, name string, n int, timeout time.Duration) (rate float64, first, last time.Time, size int) {
	b.Helper()
	ctx := b.Context()
	s, err := h.js.Stream(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		info, err := s.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs >= uint64(n) {
			first, last = info.State.FirstTime, info.State.LastTime
			msg, err := s.GetMsg(ctx, info.State.LastSeq)
			if err != nil {
				b.Fatal(err)
			}
			return float64(n-1) / last.Sub(first).Seconds(), first, last, len(msg.Data)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s holds %d of %d messages after %v", name, info.State.Msgs, n, timeout)
		}
		if err := h.exitedEarly(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bareLoop runs the floor: streams shaped like the worker's, per tenants
// requests of reqBytes published first, then inFlight goroutines per
// tenant that pull one, publish a result of resultBytes and double-ack.
func (h *harness) bareLoop(b *testing.B, names []string, per, reqBytes, resultBytes, inFlight int) float64 {
	b.Helper()
	consumers := h.loopRequests(b, "bare", jetstream.InterestPolicy, names, per, reqBytes)
	result := bytes.Repeat([]byte{'y'}, resultBytes)
	rate, err := h.runLoop(b, "bare", consumers, per, inFlight, func(ctx context.Context, i int, msg jetstream.Msg) error {
		out := nats.NewMsg("bare.result." + names[i])
		out.Data = result
		out.Header.Set(jetstream.MsgIDHeader, "result:"+msg.Headers().Get(jetstream.MsgIDHeader))
		if _, err := h.js.PublishMsg(ctx, out); err != nil {
			return err
		}
		return msg.DoubleAck(ctx)
	})
	if err != nil {
		b.Fatal(err)
	}
	return rate
}

// loopRequests makes the request and result streams of a reference loop
// (subjects <name>.request.> and <name>.result.>, streams named in upper
// case), a consumer per tenant, and publishes per requests of reqBytes to
// each tenant, with message ids <tenant>:r<i>.
func (h *harness) loopRequests(b testing.TB, name string, retention jetstream.RetentionPolicy, names []string, per, reqBytes int) []jetstream.Consumer {
	b.Helper()
	ctx := b.Context()
	upper := strings.ToUpper(name)
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: upper + "_REQUESTS", Subjects: []string{name + ".request.>"}, Retention: retention,
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour, Discard: jetstream.DiscardNew,
	}); err != nil {
		b.Fatal(err)
	}
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: upper + "_RESULTS", Subjects: []string{name + ".result.>"}, Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour,
	}); err != nil {
		b.Fatal(err)
	}
	consumers := make([]jetstream.Consumer, len(names))
	for i, t := range names {
		c, err := h.js.CreateOrUpdateConsumer(ctx, upper+"_REQUESTS", jetstream.ConsumerConfig{
			Durable: name + "-" + t, FilterSubject: name + ".request." + t, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: time.Minute, MaxDeliver: -1, MaxAckPending: 256,
		})
		if err != nil {
			b.Fatal(err)
		}
		consumers[i] = c
	}
	body := bytes.Repeat([]byte{'x'}, reqBytes)
	sent := 0
	for i := range per {
		for _, t := range names {
			m := nats.NewMsg(name + ".request." + t)
			m.Data = body
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:r%07d", t, i))
			if _, err := h.js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
			if sent++; sent%publishBatch == 0 {
				h.publishedAll(b, name)
			}
		}
	}
	h.publishedAll(b, name)
	return consumers
}

// publishedAll waits until every asynchronous publish has its
// acknowledgement.
func (h *harness) publishedAll(b testing.TB, name string) {
	b.Helper()
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatalf("%s requests not acknowledged after 2m", name)
	}
}

// runLoop runs inFlight goroutines per tenant (consumers[i] is tenant
// i's), each pulling one request at a time and handing it to step, until
// every request is taken; the first failure stops them all. It returns
// the rate at which the loop's results were stored.
func (h *harness) runLoop(tb testing.TB, name string, consumers []jetstream.Consumer, per, inFlight int,
	step func(ctx context.Context, i int, msg jetstream.Msg) error,
) (float64, error) {
	tb.Helper()
	var left atomic.Int64
	left.Store(int64(per * len(consumers)))
	runCtx, cancel := context.WithTimeout(tb.Context(), 5*time.Minute)
	defer cancel()
	g, ctx := errgroup.WithContext(runCtx)
	for i, c := range consumers {
		for range inFlight {
			g.Go(func() error {
				for left.Load() > 0 && ctx.Err() == nil {
					msg, err := c.Next(jetstream.FetchMaxWait(time.Second))
					if errors.Is(err, nats.ErrTimeout) {
						continue // the tenant's share is taken; others finish
					}
					if err != nil {
						return err
					}
					if err := step(ctx, i, msg); err != nil {
						return err
					}
					left.Add(-1)
				}
				return ctx.Err()
			})
		}
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("%s loop: %w", name, err)
	}
	rate, _, _, _ := h.waitStream(tb, strings.ToUpper(name)+"_RESULTS", per*len(consumers), time.Minute)
	return rate, nil
}
