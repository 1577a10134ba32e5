package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// QuotaJournal is the limiter's journal in the quota stream: one subject
// per tenant, each entry published only if the subject's last entry is the
// one the writer expects (Nats-Expected-Last-Subject-Sequence).
//
// The budget journal (stream MDE_OFFBOARD_BUDGET, <prefix>.budget.<tenant>)
// is the same machinery over its own stream: see NewBudgetJournal.
type QuotaJournal struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	kind   journalKind
}

// journalKind names a journal's stream and subjects.
type journalKind struct {
	name    string // in errors and logs: "quota journal", "budget journal"
	stream  string
	history string // the worker's flag that sets how long the stream keeps entries
	subject func(tenant string) string
	all     string // matches every tenant's subject
	prefix  string // a tenant's subject is prefix + tenant
}

func quotaKind(s offboard.Subjects) journalKind {
	return journalKind{name: "quota journal", stream: offboard.StreamQuota, history: "--quota-history", subject: s.Quota, all: s.AllQuota(), prefix: s.Quota("")}
}

func budgetKind(s offboard.Subjects) journalKind {
	return journalKind{name: "budget journal", stream: offboard.StreamBudget, history: "--budget-history", subject: s.Budget, all: s.AllBudget(), prefix: s.Budget("")}
}

// NewQuotaJournal opens the quota stream, which must exist (Ensure).
func NewQuotaJournal(ctx context.Context, js jetstream.JetStream, subjects offboard.Subjects) (*QuotaJournal, error) {
	return openJournal(ctx, js, quotaKind(subjects))
}

// NewBudgetJournal opens the budget stream, which must exist (Ensure):
// each tenant's created actions, reserved before the offboard call as a
// quota call is, with the same compare-and-swap.
func NewBudgetJournal(ctx context.Context, js jetstream.JetStream, subjects offboard.Subjects) (*QuotaJournal, error) {
	return openJournal(ctx, js, budgetKind(subjects))
}

func openJournal(ctx context.Context, js jetstream.JetStream, kind journalKind) (*QuotaJournal, error) {
	stream, err := js.Stream(ctx, kind.stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", kind.stream, err)
	}
	return &QuotaJournal{js: js, stream: stream, kind: kind}, nil
}

// Append implements limiter.Journal.
func (j *QuotaJournal) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	data, err := json.Marshal(&ev) // a pointer: the Event is not copied into an interface
	if err != nil {
		return 0, err
	}
	subject := j.kind.subject(tenant)
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	ack, err := j.js.Publish(ctx, subject, data, jetstream.WithExpectLastSequencePerSubject(last))
	if err == nil {
		return ack.Sequence, nil
	}
	if !IsWrongLastSequence(err) {
		if notStored(err) {
			return 0, fmt.Errorf("%w: %w", limiter.ErrNotStored, err)
		}
		return 0, err
	}
	// A replicated stream does not say which entry is last: ask.
	m, err := j.stream.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, &limiter.ConflictError{Last: 0}
	case err != nil:
		return 0, fmt.Errorf("last %s entry of %s: %w", j.kind.stream, tenant, err)
	}
	return 0, &limiter.ConflictError{Last: m.Sequence}
}

// notStored says whether err, of a publish, says for sure that the
// message was not stored: the server refused it for a limit
// (StoreRefused), or the client did not send it (larger than the server
// takes).
func notStored(err error) bool {
	return StoreRefused(err) || errors.Is(err, nats.ErrMaxPayload)
}

// clockProbe is the journal subject of the entries a process writes to
// find its own place in the journal and, with the server's timestamp, its
// clock's offset. No tenant can have this name.
const clockProbe = "_clock"

// probeInterval is how often a process writes a probe: an idle process, or
// one stopped by its clock's offset, has no other entry to measure it by.
const probeInterval = 30 * time.Second

// FollowQuota feeds shared with the quota journal's entries written in the
// last back (the longest window, plus the call lease and the clock
// margin), then with each new one, until the returned stop is called.
// Each entry's server timestamp also measures this process's clock offset
// (limiter.Shared.ObserveStamp).
//
// shared becomes ready once the feed has delivered an entry this process
// wrote at the start (a probe, on a subject no tenant has): everything the
// journal held then has been read, and the clock has been measured. When
// the journal holds nothing that still counts, it is ready at once, its
// clock measured on the probe as stored.
// Waiting for the stream's last sequence instead would wait forever after
// a purge, or with the last entry deleted, since that entry never comes.
//
// A stream that keeps its entries less long than back is refused: calls
// that still count would be missing from it.
//
// Another process's lease may be longer than this one's (its
// --call-timeout longer), up to limiter.MaxLease: a call it entered
// before back and never ended (it was killed) counts until its due time
// and a window after. So the feed reads further back by as much as
// that lease may be longer, as far as the stream keeps entries: a
// process with such a lease made the stream keep them that long.
func FollowQuota(ctx context.Context, js jetstream.JetStream, subjects offboard.Subjects, shared *limiter.Shared, back time.Duration, log *zap.Logger) (stop func(), err error) {
	reach := back
	if more := limiter.MaxLease - shared.Lease(); more > 0 && back < math.MaxInt64-more {
		reach += more
	}
	return followJournal(ctx, js, quotaKind(subjects), shared, back, reach, log)
}

// FollowBudget is FollowQuota for the budget journal. Every process
// reserves a budget slot for the same lease (BudgetLease).
func FollowBudget(ctx context.Context, js jetstream.JetStream, subjects offboard.Subjects, shared *limiter.Shared, back time.Duration, log *zap.Logger) (stop func(), err error) {
	return followJournal(ctx, js, budgetKind(subjects), shared, back, back, log)
}

// followJournal feeds shared with the journal's entries from reach ago,
// or as far back as the stream keeps them if less, but at least back,
// which the stream must keep.
func followJournal(ctx context.Context, js jetstream.JetStream, kind journalKind, shared *limiter.Shared, back, reach time.Duration, log *zap.Logger) (stop func(), err error) {
	stream, err := js.Stream(ctx, kind.stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", kind.stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", kind.stream, err)
	}
	if keep := info.Config.MaxAge; keep > 0 && keep < back {
		// Entries that still count are gone already, or go before they
		// stop counting: a process started over it would forget them.
		return nil, fmt.Errorf("stream %s keeps its entries %s, less than the %s this worker must read back: raise its max age (%s sets it; under --no-setup, nats stream edit %s --max-age)",
			kind.stream, keep, back, kind.history, kind.stream)
	}
	end, probeEv, err := writeProbe(ctx, js, kind, shared)
	if err != nil {
		return nil, err
	}
	// The entries that still count are those the server stamped within
	// back of now by its clock, which stamped the probe: by this
	// process's clock, one running ahead would skip some for good.
	probe, err := stream.GetMsg(ctx, end)
	if err != nil {
		return nil, fmt.Errorf("%s probe: %w", kind.name, err)
	}
	if keep := info.Config.MaxAge; keep > 0 {
		reach = min(reach, keep)
	}
	start := probe.Time.Add(-max(back, reach))
	// The probe measures the clock before the feed brings any entry: the
	// entries before it only tell a clock behind the server's, and one
	// ahead would cap their times from hours ahead (limiter.Shared's
	// apply).
	shared.ObserveStamp(probeEv, probe.Time)
	if info.State.Msgs == 0 || info.State.LastTime.Before(start) {
		// Nothing that still counts: ready at once, without waiting for
		// the feed to bring the probe.
		shared.MarkCaughtUp(info.State.LastSeq)
	}
	cons, err := js.OrderedConsumer(ctx, kind.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{kind.all},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", kind.stream, err)
	}
	cut := make(chan struct{}, 1)
	cc, err := cons.Consume(feed(kind, shared, end, log), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("journal feed", zap.String("stream", kind.stream), zap.Error(err))
		// Cut off: the stream may have been deleted and made anew. Its
		// consumer deleted, it likely was: no call starts until the
		// stream is looked at. (Not for every cut: calls would wait
		// through an outage for that look, fetching nothing.)
		if errors.Is(err, jetstream.ErrConsumerDeleted) {
			shared.Hold()
		}
		select {
		case cut <- struct{}{}:
		default:
		}
	}))
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", kind.stream, err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var probes sync.WaitGroup
	probes.Go(func() { probeEvery(pctx, js, kind, shared, log) })
	probes.Go(func() { checkAfterCuts(pctx, stream, kind, info.Created, shared, cut, log) })
	return func() {
		cancel()
		probes.Wait()
		cc.Stop()
	}, nil
}

// checkAfterCuts looks at the journal's stream each time the feed was cut
// off (cut) and, once it answers, tells shared (limiter.Shared.Resume)
// whether it is as it was when the feed began (created then), or deleted
// or made anew, which no call of this process may follow. Calls held
// (limiter.Shared.Hold) wait until then; held again during a look, they
// wait for the next one, which that cut brings.
func checkAfterCuts(ctx context.Context, stream jetstream.Stream, kind journalKind, created time.Time, shared *limiter.Shared, cut <-chan struct{}, log *zap.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-cut:
		}
		for {
			holds := shared.Holds()
			sctx, cancel := StepCtx(ctx)
			info, err := stream.Info(sctx)
			cancel()
			var remade error
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound):
				// Whatever stream is made under its name later is a new one.
				remade = fmt.Errorf("stream %s was deleted", kind.stream)
			case err == nil && !info.Created.Equal(created):
				remade = fmt.Errorf("stream %s was deleted and made anew: created %s, %s when this process began reading it",
					kind.stream, info.Created.UTC().Format(time.RFC3339Nano), created.UTC().Format(time.RFC3339Nano))
			}
			if remade != nil {
				log.Error(kind.name+" deleted under this process: it makes no call until it is restarted", zap.Error(remade))
			}
			if err == nil || remade != nil {
				shared.Resume(holds, remade)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-shared.Wall().After(time.Second): // paces requests to the server
			}
		}
	}
}

// clockLook is how often a process looks at its clock for a step, and
// at first writes a probe while its calls wait for the clock: such a
// process makes no look or entry of its own, and would otherwise see its
// clock set right (a step, a slew, the server's clock) only at its next
// probe.
const clockLook = time.Second

// probeEvery writes a probe every probeInterval until ctx ends, and at
// once when shared saw its clock stepped. While calls wait for the clock
// it looks for a step every clockLook and probes after clockLook, then
// after twice as long each time, until the ticker's probes are as often:
// a short offset
// mended lets calls go on within about a second, and a clock that stays
// off does not write an entry a second for every replica to read.
func probeEvery(ctx context.Context, js jetstream.JetStream, kind journalKind, shared *limiter.Shared, log *zap.Logger) {
	ticker := shared.Wall().NewTicker(probeInterval)
	defer ticker.Stop()
	look := shared.Wall().NewTicker(clockLook)
	defer look.Stop()
	var waited, gap time.Duration // while calls wait for the clock: since the last probe, and the next one's
	for {
		select {
		case <-ctx.Done():
			return
		case <-look.Chan():
			if !shared.LookAtClock() {
				waited, gap = 0, 0
				continue
			}
			if waited += clockLook; waited < gap || gap >= probeInterval {
				continue // the ticker's probes are as often by now
			}
			gap = max(2*gap, clockLook)
		case <-ticker.Chan():
		case <-shared.ProbeNow():
		}
		waited = 0
		if _, _, err := writeProbe(ctx, js, kind, shared); err != nil && ctx.Err() == nil {
			log.Warn(kind.name+" probe", zap.Error(err))
		}
	}
}

// writeProbe writes a probe entry and returns its number and the entry.
func writeProbe(ctx context.Context, js jetstream.JetStream, kind journalKind, shared *limiter.Shared) (seq uint64, ev limiter.Event, err error) {
	ev = limiter.Event{Writer: shared.Writer()}
	ev.Written, ev.Gen = shared.Stamp()
	data, err := json.Marshal(ev)
	if err != nil {
		return 0, ev, err
	}
	ack, err := js.Publish(ctx, kind.subject(clockProbe), data)
	if err != nil {
		return 0, ev, fmt.Errorf("%s probe: %w", kind.name, err)
	}
	return ack.Sequence, ev, nil
}

// feed applies each journal entry to shared, and marks it caught up once
// the entry numbered end has come.
func feed(kind journalKind, shared *limiter.Shared, end uint64, log *zap.Logger) jetstream.MessageHandler {
	ready := false
	prefix := kind.prefix
	return func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		seq := meta.Sequence.Stream
		var ev limiter.Event
		tenant := strings.TrimPrefix(msg.Subject(), prefix)
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			// It may have entered calls this process cannot see: the
			// tenant waits until any such call has left its windows.
			log.Error("unreadable "+kind.name+" entry: tenant paused until the calls it may hold leave the longest window",
				zap.String("subject", msg.Subject()), zap.Uint64("seq", seq), zap.Time("stored", meta.Timestamp), zap.Error(err))
			shared.ObserveStamp(limiter.Event{}, meta.Timestamp)
			shared.DeliverUnreadable(seq, tenant, meta.Timestamp)
		} else {
			shared.ObserveStamp(ev, meta.Timestamp)
			shared.Deliver(seq, tenant, ev)
		}
		if !ready && seq >= end {
			ready = true
			shared.MarkCaughtUp(seq)
		}
	}
}
