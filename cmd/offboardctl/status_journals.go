package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// statusJournals gives status each tenant's calls from the quota journal
// and slots from the budget journal: read from the tenant's own subject,
// or, once readAll has run, from both journals read once for every
// tenant.
type statusJournals struct {
	js       jetstream.JetStream
	subjects offboard.Subjects
	// quota and budget are every tenant's calls read by readAll, by
	// tenant; nil before: each tenant's own subject is read.
	quota, budget map[string]*journalTally
}

// offboardCalls is the tenant's offboard calls since the given time and
// when a 429 pauses the tenant until (see offboardCalls).
func (j *statusJournals) offboardCalls(ctx context.Context, tenant string, ws []limiter.Window, now time.Time) ([]time.Time, time.Time, error) {
	if j.quota == nil {
		return offboardCalls(ctx, j.js, j.subjects, tenant, ws, quotaSince(ws, now), now)
	}
	t := j.quota[tenant]
	if t == nil {
		return nil, time.Time{}, nil
	}
	return t.at(now), t.paused, nil
}

// budgetSlots reads a tenant's budget window and the times of the slots
// counted against it, from the budget journal (as the worker counts them:
// every slot reserved and not given back, a slot under way as used now,
// one whose process died from its due time); ok is false without a
// budget. h is the budget journal's horizon.
func (j *statusJournals) budgetSlots(ctx context.Context, tenant, budget string, h budgetHorizon, now time.Time) (w limiter.Window, slots []time.Time, ok bool, err error) {
	w, since, ok := budgetSince(budget, now)
	switch {
	case !ok:
		return w, nil, false, nil
	case j.budget != nil:
		if t := j.budget[tenant]; t != nil {
			slots = t.at(now)
		}
		return w, slots, true, nil
	}
	slots, _, err = journalCalls(ctx, j.js, journalOf{offboard.StreamBudget, j.subjects.Budget(tenant), budgetAPI, h.history}, tenant, since, now)
	if err != nil {
		return w, nil, false, err
	}
	return w, slots, true, nil
}

// budgetSince is a budget's window and how far back its slots are read;
// ok is false without a budget, or with one the worker cannot read and so
// does not apply either.
func budgetSince(budget string, now time.Time) (limiter.Window, time.Time, bool) {
	w, err := limiter.ParseWindow(budget)
	if budget == "" || err != nil {
		return w, time.Time{}, false
	}
	return w, now.Add(-w.Length - budgetSlack), true
}

// quotaSince is how far back a tenant's quota journal is read: as far as
// the worker still counts an entry. A call entered and never ended (its
// process died) counts until its due time, which another replica's
// longer lease may set up to limiter.MaxLease after the entry, and a
// window from there; a 429's pause may reach beyond the windows (an
// hour's Retry-After, limits of a minute).
func quotaSince(ws []limiter.Window, now time.Time) time.Time {
	return now.Add(-addCapped(max(addCapped(longest(ws), limiter.MaxLease), limiter.MaxPause), journalSlack))
}

// readAll reads the quota and budget journals of the tenants, each once
// for all, each tenant's entries from as far back as its status reads
// them. A read of each tenant's own subject has the server pass over
// every other tenant's entries too: with 1000 tenants calling at their
// full quota, status read for minutes.
func (j *statusJournals) readAll(ctx context.Context, tenants map[string]*tenantConsumers, view *control.View, h budgetHorizon, now time.Time) error {
	quota, budget := map[string]tenantRead{}, map[string]tenantRead{}
	for name, tc := range tenants {
		ws, _ := tenantWindows(tc.meta)
		quota[name] = tenantRead{quotaSince(ws, now), longest(ws)}
		inForce, _ := budgetInForce(name, tc.meta, view, h)
		if _, since, ok := budgetSince(inForce, now); ok {
			budget[name] = tenantRead{since, h.history}
		}
	}
	var g errgroup.Group
	g.Go(func() (err error) {
		j.quota, err = readEvery(ctx, j.js, journalOf{offboard.StreamQuota, j.subjects.Quota(""), mde.APIOffboard, 0}, quota)
		return err
	})
	g.Go(func() (err error) {
		j.budget, err = readEvery(ctx, j.js, journalOf{offboard.StreamBudget, j.subjects.Budget(""), budgetAPI, 0}, budget)
		return err
	})
	return g.Wait()
}

// tenantRead is how readEvery reads a tenant's entries: from since on,
// with the tenant's horizon (journalTally.horizon).
type tenantRead struct {
	since   time.Time
	horizon time.Duration
}

// readEvery reads the journal's entries of the tenants in since, each
// tenant's from its time on, in one pass over the stream; j.subject is
// the tenants' subjects' common prefix.
func readEvery(ctx context.Context, js jetstream.JetStream, j journalOf, since map[string]tenantRead) (map[string]*journalTally, error) {
	if len(since) == 0 {
		return map[string]*journalTally{}, nil
	}
	first := since[slices.MinFunc(slices.Collect(maps.Keys(since)), func(a, b string) int { return since[a].since.Compare(since[b].since) })].since
	d := newJournalDecoders(j.api, since)
	err := readStoredSince(ctx, js, j.stream, j.subject+">", first, func(m jetstream.Msg) {
		tenant, _ := strings.CutPrefix(m.Subject(), j.subject)
		d.decode(tenant, m)
	})
	tallies := d.wait()
	if err != nil {
		return nil, err
	}
	return tallies, nil
}

// journalDecoders count journal entries on several goroutines, each
// tenant's on one of them in the order read: decoding the entries is
// most of the work of reading a journal.
type journalDecoders struct {
	api   string
	since map[string]tenantRead // the tenants, and from when each one's entries count
	owner map[string]int        // the decoder of each tenant
	in    []chan tenantMsg
	// tallies are each decoder's tenants' calls.
	tallies []map[string]*journalTally
	wg      sync.WaitGroup
}

type tenantMsg struct {
	tenant string
	msg    jetstream.Msg
}

func newJournalDecoders(api string, since map[string]tenantRead) *journalDecoders {
	d := &journalDecoders{api: api, since: since, owner: make(map[string]int, len(since))}
	n := min(statusReaders, len(since))
	for range n {
		in, tallies := make(chan tenantMsg, 256), map[string]*journalTally{}
		d.in, d.tallies = append(d.in, in), append(d.tallies, tallies)
		d.wg.Go(func() {
			for m := range in {
				d.count(tallies, m)
			}
		})
	}
	i := 0
	for tenant := range since {
		d.owner[tenant] = i % n
		i++
	}
	return d
}

// decode hands a tenant's entry to its decoder.
func (d *journalDecoders) decode(tenant string, m jetstream.Msg) {
	if i, ok := d.owner[tenant]; ok {
		d.in[i] <- tenantMsg{tenant, m}
	} // else a tenant without consumers, or a worker's clock probe
}

func (d *journalDecoders) count(tallies map[string]*journalTally, m tenantMsg) {
	read := d.since[m.tenant]
	if meta, err := m.msg.Metadata(); err != nil || meta.Timestamp.Before(read.since) {
		return
	}
	if tallies[m.tenant] == nil {
		tallies[m.tenant] = newJournalTally(read.horizon)
	}
	tallies[m.tenant].add(m.msg, d.api)
}

// wait ends the decoders once they counted every entry handed over, and
// returns every tenant's calls.
func (d *journalDecoders) wait() map[string]*journalTally {
	for _, in := range d.in {
		close(in)
	}
	d.wg.Wait()
	all := map[string]*journalTally{}
	for _, tallies := range d.tallies {
		maps.Copy(all, tallies)
	}
	return all
}

// readStoredSince reads every message stored now on subject from the
// first stored at or after since, in order, through one consumer: an
// ordered consumer's fetch makes its consumer anew each time, and the
// server counts what is pending on the subject for each, over the whole
// stream.
func readStoredSince(ctx context.Context, js jetstream.JetStream, stream, subject string, since time.Time, fn func(jetstream.Msg)) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	last, err := lastMsgOn(ctx, s, subject)
	if err != nil || last == nil || last.Time.Before(since) {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	defer msgs.Stop()
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		fn(m)
		// Done once the last message stored when the read began is read,
		// or any later one (that one gone), or nothing more is stored.
		if meta, err := m.Metadata(); err == nil && (meta.NumPending == 0 || meta.Sequence.Stream >= last.Sequence) {
			return nil
		}
	}
}

// readBatch is how many messages readStoredSince asks for at a time.
const readBatch = 2048
