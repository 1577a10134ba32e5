package queue

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestJournalRefusingForALimitGathersNoEnds: the quota stream is full
// (its max_msgs, discard new) and refuses every entry; the tenant's
// requests come back every few seconds meanwhile, each taking a place
// that the journal refuses. A refused entry was not stored and holds no
// call for anyone: once the stream takes entries again, nothing is
// written for it. Before, each refusal left its call's end pending, as
// after an answer lost, and the next entry carried them all: one per
// refusal, however long the stream stayed full, until the entry
// outgrew the largest message NATS takes and the tenant never called
// again.
func TestJournalRefusingForALimitGathersNoEnds(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	var l *limiter.Limiter
	tn := followedTenant(t, js, s, clock, func(tn *limiter.Tenant) {
		l = tn.Add("offboard", []limiter.Window{{Count: 1000, Length: time.Minute}})
	})
	st, err := js.Stream(t.Context(), offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	// limit sets the stream's max_msgs (-1: none) and returns its last
	// entry's number.
	limit := func(maxMsgs int64) uint64 {
		t.Helper()
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.MaxMsgs, cfg.Discard = maxMsgs, jetstream.DiscardNew
		if maxMsgs < 0 {
			cfg.Discard = jetstream.DiscardOld
		}
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	record := func() error {
		t.Helper()
		p, _ := l.TryAcquire(clock.Now())
		if p == nil {
			t.Fatal("no permit")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := p.Record(ctx); err != nil {
			p.Release()
			return err
		}
		p.CompleteNow()
		return nil
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	limit(int64(info.State.Msgs)) // full
	const refused = 30
	for range refused {
		if err := record(); err == nil || !StoreRefused(err) {
			t.Fatalf("an entry in a full journal: %v, want a refusal for a limit", err)
		}
	}
	from := limit(-1) + 1 // taking entries again
	if err := record(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := tn.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	info, err = st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	unsent := 0
	for seq := from; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != s.Subjects.Quota("contoso") {
			continue
		}
		var ev limiter.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		for _, c := range ev.Done {
			if c.At == 0 {
				unsent++
			}
		}
	}
	if unsent != 0 {
		t.Fatalf("%d ends of calls never sent written after %d entries the journal refused, want none", unsent, refused)
	}
}
