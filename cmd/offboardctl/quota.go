package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// journalSlack is read from the quota journal beyond the longest a call
// counts (quotaSince): the margin the worker adds to the times other
// replicas wrote (--quota-margin), with room to spare.
const journalSlack = 2 * time.Minute

// tenantWindows are the tenant's offboard limits as its consumers' metadata
// records them; def is true when they do not and the documented defaults
// stand in.
func tenantWindows(meta map[string]string) (ws []limiter.Window, def bool) {
	if s := meta[queue.MetaLimits]; s != "" {
		if ws, err := limiter.ParseWindows(strings.Split(s, ",")); err == nil {
			return ws, false
		}
	}
	return limiter.Default(), true
}

// campaignWindows are the tenant's offboard limits for a campaign's ETA:
// rate when given (--rate), else those its worker recorded on the
// tenant's consumers (as status reads them), else the documented ones.
// A consumer that cannot be read (a timeout, no permission to read its
// information) leaves the documented ones, with a line on stderr: the
// ETA is no reason to fail a run or a status.
func (c *cli) campaignWindows(ctx context.Context, js jetstream.JetStream, tenant string, rate []campaign.Window) []campaign.Window {
	if rate != nil {
		return rate
	}
	ws, err := recordedWindows(ctx, js, tenant)
	if err != nil {
		fmt.Fprintf(c.stderr, "offboardctl: the ETA is at the documented 100/1m + 1500/1h: tenant %s's own limits were not read: %v\n", tenant, err)
		return campaign.DefaultWindows
	}
	return ws
}

// recordedWindows are the offboard limits the tenant's worker recorded on
// its consumers, else the documented ones.
func recordedWindows(ctx context.Context, js jetstream.JetStream, tenant string) ([]campaign.Window, error) {
	cons, err := tenantConsumer(ctx, js, tenant)
	if err != nil || cons == nil {
		return campaign.DefaultWindows, err
	}
	ws, def := tenantWindows(cons.CachedInfo().Config.Metadata)
	if def {
		return campaign.DefaultWindows, nil
	}
	out := make([]campaign.Window, len(ws))
	for i, w := range ws {
		out[i] = campaign.Window{Count: w.Count, Length: w.Length}
	}
	return out, nil
}

// limiterWindows are the windows as the limiter reads them.
func limiterWindows(ws []campaign.Window) []limiter.Window {
	out := make([]limiter.Window, len(ws))
	for i, w := range ws {
		out[i] = limiter.Window{Count: w.Count, Length: w.Length}
	}
	return out
}

// journalCall is one offboard call in the journal.
type journalCall struct {
	due, end time.Time
	ended    bool
}

// callKey names a call in the journal: its writer's and its number there.
type callKey struct {
	writer string
	id     uint64
}

// offboardCalls reads the tenant's offboard calls from the quota journal
// since the given time, and when a 429 pauses the tenant until. Each call is
// the time it counts from in the windows: its answer's arrival; now while
// it is under way; its due time when its process died without writing its
// end.
func offboardCalls(ctx context.Context, js jetstream.JetStream, s offboard.Subjects, tenant string, ws []limiter.Window, since, now time.Time) (calls []time.Time, pausedUntil time.Time, err error) {
	return journalCalls(ctx, js, journalOf{offboard.StreamQuota, s.Quota(tenant), mde.APIOffboard, longest(ws)}, tenant, since, now)
}

// journalOf names what journalCalls reads: a stream, a tenant's subject in
// it, and the API whose calls count; horizon is the tenant's longest
// window as the worker keeps it (journalTally.horizon).
type journalOf struct {
	stream, subject, api string
	horizon              time.Duration
}

// journalCalls is offboardCalls for any journal and API.
func journalCalls(ctx context.Context, js jetstream.JetStream, j journalOf, tenant string, since, now time.Time) (calls []time.Time, pausedUntil time.Time, err error) {
	subject := j.subject
	stream, err := js.Stream(ctx, j.stream)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("stream %s: %w", j.stream, err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s of %s: %w", j.stream, tenant, err)
	}
	if last.Time.Before(since) {
		return nil, time.Time{}, nil
	}
	byID, pausedUntil, err := readJournal(ctx, js, j, since, scanWait)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s of %s: %w", j.stream, tenant, err)
	}
	tally := journalTally{calls: byID, paused: pausedUntil}
	return tally.at(now), pausedUntil, nil
}

// readJournal reads one tenant's journal entries from since, waiting up
// to first for the first of them (scanWaiting: a fetch that finds nothing
// on a slow server does not end the read while more is stored).
func readJournal(ctx context.Context, js jetstream.JetStream, j journalOf, since time.Time, first time.Duration) (map[callKey]*journalCall, time.Time, error) {
	tally := newJournalTally(j.horizon)
	err := scanWaiting(ctx, js, j.stream, j.subject, since, first, func(msg jetstream.Msg) {
		tally.add(msg, j.api)
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return tally.calls, tally.paused, nil
}

// unreadableLease is how long the worker lets a call entered in an entry
// it cannot read take, with its default --call-timeout: its lease.
const unreadableLease = mde.DefaultTimeout * 3 / 2

// dueCap is how far past an entry's storing the worker counts a call it
// holds as under way: MaxLease or the lease of the journal's calls,
// whichever is longer (limiter.SharedOptions.Lease). A budget slot's is
// two hours (queue.BudgetLease): cut to one, a slot whose process died
// showed free in status an hour before the worker let it go.
func dueCap(api string) time.Duration {
	if api == budgetAPI {
		return max(queue.BudgetLease, limiter.MaxLease)
	}
	return limiter.MaxLease
}

// journalTally is one tenant's calls of an API and its pause, as read
// from its journal's entries so far.
type journalTally struct {
	calls  map[callKey]*journalCall
	paused time.Time
	// horizon is the tenant's longest window as the worker keeps it; 0:
	// not known. A time an entry holds is capped as the worker caps it
	// when it reads the entry, about when the server stored it: a call's
	// due time to its lease on (dueCap), its end to the horizon on, a pause to the
	// horizon or MaxPause on, whichever is longer. An entry dated far
	// ahead (a replica's clock, or an entry written by hand) holds the
	// tenant no longer than the worker lets it.
	horizon time.Duration
}

func newJournalTally(horizon time.Duration) *journalTally {
	return &journalTally{calls: map[callKey]*journalCall{}, horizon: horizon}
}

// add reads one journal entry, counting its calls of api.
func (t *journalTally) add(msg jetstream.Msg, api string) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	stored := meta.Timestamp
	var ev limiter.Event
	if json.Unmarshal(msg.Data(), &ev) != nil {
		// An entry of another version may have entered calls: the worker
		// pauses the tenant until any such call has left its windows
		// (its longest of every API's: status knows the offboard ones,
		// and so shows the least of that pause).
		t.paused = maxTime(t.paused, stored.Add(unreadableLease+t.horizon+queue.DefaultQuotaMargin))
		return
	}
	capAt := func(at int64, d time.Duration) time.Time {
		t := time.Unix(0, at)
		if d > 0 && t.Sub(stored) > d {
			return stored.Add(d)
		}
		return t
	}
	call := func(c limiter.Call) *journalCall {
		k := callKey{ev.Writer, c.ID}
		if t.calls[k] == nil {
			t.calls[k] = &journalCall{}
		}
		return t.calls[k]
	}
	for _, c := range ev.Reserved {
		if c.API == api {
			call(c).due = capAt(c.At, dueCap(api))
		}
	}
	for _, c := range ev.Done {
		if c.API == api {
			jc := call(c)
			jc.ended = true
			if c.At != 0 {
				jc.end = capAt(c.At, t.horizon)
			}
		}
	}
	if ev.Paused != 0 {
		t.paused = maxTime(t.paused, capAt(ev.Paused, max(t.horizon, limiter.MaxPause)))
	}
}

// at is the times the calls count from now, in order (see offboardCalls).
func (t *journalTally) at(now time.Time) []time.Time {
	var calls []time.Time
	for _, c := range t.calls {
		switch {
		case c.ended && c.end.IsZero(): // never sent
		case c.ended:
			calls = append(calls, c.end)
		case c.due.After(now):
			calls = append(calls, now)
		default:
			calls = append(calls, c.due)
		}
	}
	slices.SortFunc(calls, func(a, b time.Time) int { return a.Compare(b) })
	return calls
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// callsLeft is how many calls could start now in each window.
func callsLeft(ws []limiter.Window, calls []time.Time, now time.Time) []int {
	left := make([]int, len(ws))
	for i, w := range ws {
		n := 0
		for _, t := range calls {
			if t.After(now.Add(-w.Length)) {
				n++
			}
		}
		left[i] = max(w.Count-n, 0)
	}
	return left
}

// quotaETA is how long n calls take at the quota's pace after the calls
// already made (eta), counted from the end of a 429's pause while one
// holds the tenant: the pause holds what waits or is in flight.
func quotaETA(ws []limiter.Window, calls []time.Time, pausedUntil time.Time, n int, now time.Time) time.Duration {
	from := maxTime(now, pausedUntil)
	return addCapped(eta(ws, calls, n, from), from.Sub(now))
}

// journalETA is how long the tenant's requests waiting and in flight take
// at the quota's pace under the windows, after the offboard calls the
// quota journal holds in them and its 429's pause, as status reads them.
// A call under way is in the journal and among the requests in flight:
// counted once. An estimate counted from empty windows errs short while
// a window is full, and grows as the wait goes on.
func (c *cli) journalETA(ctx context.Context, js jetstream.JetStream, tenant string, ws []campaign.Window, waiting, inFlight int, now time.Time) (time.Duration, error) {
	lws := limiterWindows(ws)
	j := &statusJournals{js: js, subjects: c.subjects}
	calls, pausedUntil, err := j.offboardCalls(ctx, tenant, lws, now)
	if err != nil {
		return 0, err
	}
	return quotaETA(lws, calls, pausedUntil, waiting+inFlightToCall(calls, inFlight, now), now), nil
}

// inFlightToCall is how many of the requests in flight (fetched, not
// answered) still need an offboard call: those in flight less the calls
// under way, which offboardCalls counts as made now and which belong to
// some of them. A request in flight may wait for its call (a retry after
// a 5xx, a place another request took): with nothing left in the stream,
// leaving those out read "now" for a call a full window held an hour.
func inFlightToCall(calls []time.Time, inFlight int, now time.Time) int {
	underWay := 0
	for _, at := range calls {
		if at.Equal(now) { // offboardCalls counts a call under way as made now
			underWay++
		}
	}
	return max(inFlight-underWay, 0)
}

// etaCap is how many calls eta schedules one by one; beyond, it goes on
// at the windows' long-run rate.
const etaCap = 200_000

// eta is how long n calls take at the quota's pace, after the calls
// already made: each starts as soon as every window has room. It is a
// lower bound (it leaves out the calls' latency and the in-flight cap).
func eta(ws []limiter.Window, calls []time.Time, n int, now time.Time) time.Duration {
	if n <= 0 || len(ws) == 0 {
		return 0
	}
	all := slices.Clone(calls)
	t := now
	for range min(n, etaCap) {
		t = now
		for _, w := range ws {
			if len(all) >= w.Count {
				t = maxTime(t, all[len(all)-w.Count].Add(w.Length))
			}
		}
		all = append(all, t)
	}
	d := t.Sub(now)
	if n > etaCap {
		rate := float64(ws[0].Count) / ws[0].Length.Seconds()
		for _, w := range ws[1:] {
			rate = min(rate, float64(w.Count)/w.Length.Seconds())
		}
		// In float, and held to the longest duration there is: a slow
		// budget's centuries would wrap around to below zero.
		f := float64(d) + float64(n-etaCap)/rate*float64(time.Second)
		if f >= math.MaxInt64 {
			return math.MaxInt64
		}
		d = time.Duration(f)
	}
	return d
}
