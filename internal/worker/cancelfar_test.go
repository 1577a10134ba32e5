package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// sharedQuota has the worker keep its quota in the quota journal, so
// that the test can count the journal's entries (and a second replica
// shares the quota).
func sharedQuota(t *testing.T, o *Options) {
	t.Helper()
	qj, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{Journal: qj, Clock: o.Clock, Lease: time.Minute,
		Margin: time.Second, Wall: clockwork.NewRealClock()})
	followJournal(t, o.JS, o.Settings.Subjects, shared, false)
	o.Shared = shared
}

// secondReplica starts another worker beside e's, on the same NATS
// server, tenant and fake clock, sharing the quota journal.
func (e *loopEnv) secondReplica(t *testing.T) {
	t.Helper()
	opts := e.w.opts
	opts.Metrics = NewMetrics(prometheus.NewRegistry())
	opts.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	sharedQuota(t, &opts)
	w, err := New(t.Context(), opts, []*Tenant{e.w.tenants["contoso"].Tenant})
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

// publishMany publishes contoso's requests ids on the subject of prio,
// for the same device, without waiting for each.
func (e *loopEnv) publishMany(t *testing.T, ids []string, prio offboard.Priority) {
	t.Helper()
	for i, id := range ids {
		data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": loopMachine})
		m := nats.NewMsg(offboard.Subjects{}.Request("contoso", prio))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, "contoso:"+id)
		if _, err := e.js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if (i+1)%1000 == 0 || i == len(ids)-1 {
			select {
			case <-e.js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("requests not stored within 30 s")
			}
		}
	}
}

// storedCount is how many messages stream holds on subject.
func (e *loopEnv) storedCount(t *testing.T, stream, subject string) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// storedPerRequest counts the messages of stream on subject by the
// requestId of their body.
func (e *loopEnv) storedPerRequest(t *testing.T, stream, subject string) map[string]int {
	t.Helper()
	cons, err := e.js.OrderedConsumer(t.Context(), stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			return out
		}
		var r struct {
			RequestID string `json:"requestId"`
		}
		if json.Unmarshal(m.Data(), &r) == nil {
			out[r.RequestID]++
		}
	}
}

// TestCancelReachesRowsFarBehindInTheirLane: a cancelled campaign's rows
// wait on the bulk subject behind another campaign's thousands (the
// 201st, 1000th and 5000th of the lane, past the requests a cancel's
// pass sets aside, withdrawScan), the quota spent or the tenant paused.
// The cancel answers each of them cancelled within seconds, once: one
// result and one dead letter each, no offboard call, no entry in the
// quota journal, and they are deleted from the stream. The other
// campaign's rows keep their order: the first published is called first
// once the quota frees (or the pause lifts). With two replicas, both
// passing at once, the same.
func TestCancelReachesRowsFarBehindInTheirLane(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		held     string
		replicas int
	}{{"quota", 1}, {"quota", 2}, {"pause", 1}} {
		t.Run(fmt.Sprintf("%s/replicas=%d", tc.held, tc.replicas), func(t *testing.T) {
			t.Parallel()
			board := newSwitchboard()
			e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) {
				sharedQuota(t, o)
				o.Control = board
			})
			if tc.replicas == 2 {
				e.secondReplica(t)
			}
			calls := 0
			if tc.held == "quota" {
				e.publish(t, "r-1")
				e.wantCreated(t, "r-1") // the hour's only call is spent
				calls = 1
			} else {
				board.pause("contoso", offboard.Normal)
				board.pause("contoso", offboard.Bulk)
			}
			const lane = 5000
			far := map[int]bool{201: true, 1000: true, lane: true}
			ids := make([]string, 0, lane)
			want := map[string]bool{}
			other, row := 0, 0
			for i := range lane {
				if far[i+1] {
					row++
					id := campaign.RequestID("wave2", row)
					ids = append(ids, id)
					want[id] = true
					continue
				}
				other++
				ids = append(ids, campaign.RequestID("wave1", other))
			}
			e.publishMany(t, ids, offboard.Bulk)
			subjects := offboard.Subjects{}
			journal := e.storedCount(t, offboard.StreamQuota, subjects.AllQuota())
			time.Sleep(300 * time.Millisecond)
			e.cancelCampaign(t, "wave2")
			cancelled, fake := time.Now(), e.clock.Now()
			e.wantCancelledWithin(t, want, 15*time.Second, fmt.Sprintf("within 15 s of the cancel: they wait behind %d other requests of their lane", other))
			t.Logf("%d rows far behind answered %v after the cancel", len(far), time.Since(cancelled).Round(10*time.Millisecond))
			if d := e.clock.Since(fake); d > 5*time.Second {
				t.Errorf("answered %v of fake time after the cancel, want within seconds", d)
			}
			e.noResultFor(t, "while the quota is spent")
			if n := e.offboardCalls(); n != calls {
				t.Errorf("%d offboard calls, want %d", n, calls)
			}
			if n := e.storedCount(t, offboard.StreamQuota, subjects.AllQuota()); n != journal {
				t.Errorf("%d quota journal entries after the cancel, want %d: none for the rows answered cancelled", n, journal)
			}
			if n := e.storedCount(t, offboard.StreamRequests, subjects.Request("contoso", offboard.Bulk)); n != uint64(other) {
				t.Errorf("%d bulk requests in the stream, want the other campaign's %d", n, other)
			}
			results := e.storedPerRequest(t, offboard.StreamResults, subjects.Result("contoso"))
			dead := e.storedPerRequest(t, offboard.StreamDead, subjects.Dead("contoso"))
			for i := range len(far) {
				id := campaign.RequestID("wave2", i+1)
				if results[id] != 1 || dead[id] != 1 {
					t.Errorf("%s: %d results, %d dead letters stored, want 1 of each", id, results[id], dead[id])
				}
			}
			if tc.held == "pause" {
				board.resume("contoso", offboard.Normal)
				board.resume("contoso", offboard.Bulk)
			}
			// Its device is r-1's: already_pending after the quota.
			if r := e.resultOnceTheQuotaFrees(t, "wave1's first row"); r.RequestID != campaign.RequestID("wave1", 1) || r.Error != nil {
				t.Errorf("result %s %s %+v first, want %s called: the others keep their order", r.RequestID, r.Outcome, r.Error, campaign.RequestID("wave1", 1))
			}
		})
	}
}

// TestCancelFarBehindTakesEachMessageOfARequestOnce: far behind others
// in their lane (past withdrawScan), a cancelled campaign's requests
// sent twice each (two messages, one request id) get one result each,
// and both of their messages leave the stream: the second is answered
// from the ledger once the first is, not left to wait behind the others
// for the claim it met. A request of the campaign's id form stored
// after its cancel is not the campaign's: a second cancel, of another
// campaign, reads the lane again, answers that campaign's row and
// leaves the later one waiting.
func TestCancelFarBehindTakesEachMessageOfARequestOnce(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) { sharedQuota(t, o) })
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	const others = withdrawScan + 100
	ids := make([]string, 0, others)
	for i := range others {
		ids = append(ids, campaign.RequestID("wave1", i+1))
	}
	e.publishMany(t, ids, offboard.Bulk)
	const rows = 100
	twice := map[string]bool{}
	for i := range rows {
		id := campaign.RequestID("wave2", i+1)
		twice[id] = true
		for _, msgID := range []string{"contoso:" + id, "contoso:" + id + ":sent-again"} {
			data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": loopMachine})
			m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Bulk))
			m.Data = data
			m.Header.Set(jetstream.MsgIDHeader, msgID)
			if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave2")
	// A second message answered from the ledger sends its result again,
	// which the results stream drops as a repeat of its message id (a
	// subscriber to the subject sees it).
	for want := maps.Clone(twice); len(want) > 0; {
		select {
		case r := <-e.results:
			if !twice[r.RequestID] || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
				t.Fatalf("result %s %s %+v, want one of %v cancelled", r.RequestID, r.Outcome, r.Error, want)
			}
			delete(want, r.RequestID)
		case <-time.After(15 * time.Second):
			t.Fatalf("%v not answered within 15 s of the cancel", want)
		}
	}
	subjects := offboard.Subjects{}
	lane := subjects.Request("contoso", offboard.Bulk)
	deadline := time.Now().Add(10 * time.Second)
	for e.storedCount(t, offboard.StreamRequests, lane) != others {
		if time.Now().After(deadline) {
			t.Fatalf("%d bulk requests in the stream 10 s after the cancel, want the other campaign's %d: a second message of a request answered left waiting",
				e.storedCount(t, offboard.StreamRequests, lane), others)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stored := e.storedPerRequest(t, offboard.StreamResults, subjects.Result("contoso"))
	for id := range twice {
		if stored[id] != 1 {
			t.Errorf("%d results stored for %s, want 1", stored[id], id)
		}
	}
	for drained := false; !drained; {
		select {
		case r := <-e.results:
			if !twice[r.RequestID] {
				t.Fatalf("result %s %s %+v, want none but one of %v again", r.RequestID, r.Outcome, r.Error, twice)
			}
		case <-time.After(500 * time.Millisecond):
			drained = true
		}
	}

	time.Sleep(campaign.ClockMargin + time.Second)
	later := campaign.RequestID("wave2", rows+1)
	e.publishMany(t, []string{later, campaign.RequestID("wave3", 1)}, offboard.Bulk)
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave3")
	e.wantCancelled(t, map[string]bool{campaign.RequestID("wave3", 1): true})
	e.noResultFor(t, "for "+later+", stored after its campaign's cancel")
	if n := e.storedCount(t, offboard.StreamRequests, lane); n != others+1 {
		t.Errorf("%d bulk requests in the stream, want %d: the other campaign's and %s", n, others+1, later)
	}
	if n := e.offboardCalls(); n != 1 {
		t.Errorf("%d offboard calls, want only r-1's", n)
	}
}
