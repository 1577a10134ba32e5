package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func newDeadRetryCmd(c *cli) *cobra.Command {
	var seq uint64
	var all bool
	var codes codeFilter
	cmd := &cobra.Command{
		Use:   "retry TENANT (--seq N | --all)",
		Short: "Re-publish dead letters as retries: the same request id, the next attempt",
		Long: `Re-publishes a dead letter's original body with its attempt member set to
the next attempt, on its original subject (same priority), with
Nats-Msg-Id <tenant>:<requestId>:<attempt>. A request id is retried once,
from its latest dead letter, as one more than the highest attempt of its
dead letters and of its results stored since: --seq of an older one retries from the latest, and --code is
matched against the latest one, with --seq as with --all. Without --code,
--all leaves out the dead letters of requests a campaign's cancel
answered (the cancel stands, and they would be cancelled again) and of
those a guard refused (blocked_by_policy: the refusal stands; retried,
one whose guard was lifted since would offboard its device). A dead letter
whose body fails the request's checks is not retried, nor taken for its
request id's latest.
A request whose stored result is created, already_pending or dry_run is
answered from the ledger: a retry never makes a second action. A request
id with such a result stored after its dead letter is not retried, nor is
one answered failed after offboard calls once the ledger no longer keeps
it (--ledger-ttl): the action of those calls could no longer be looked for.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == queue.UnknownTenant {
				return usagef("the dead letters under %s (subjects whose tenant is no tenant name) cannot be retried: the worker would answer them unknown_tenant again; dead ls %s lists them", queue.UnknownTenant, queue.UnknownTenant)
			}
			if err := checkTenantArg(args[0]); err != nil {
				return err
			}
			if cmd.Flags().Changed("seq") && seq == 0 {
				// Dead letters are numbered from 1: an unset shell
				// variable, say, which beside --all would retry them all.
				return usagef("--seq 0: dead letters are numbered from 1")
			}
			switch {
			case seq != 0 && all:
				return usagef("give --seq N or --all, not both")
			case seq == 0 && !all:
				return usagef("give --seq N or --all")
			}
			if err := codes.check(cmd); err != nil {
				return err
			}
			return c.retryDead(cmd.Context(), args[0], seq, codes)
		},
	}
	cmd.Flags().Var((*decimal)(&seq), "seq", "the dead letter's sequence in MDE_OFFBOARD_DEAD (its request id is retried from its latest)")
	once(cmd.Flags(), "seq")
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter of the tenant (the latest of each request id)")
	codes.flag(cmd)
	return cmd
}

// decimal is a flag's number written in decimal, as dead ls shows a
// sequence. pflag's uint64 reads Go's number syntax: --seq 010 was dead
// letter 8, 0x1f dead letter 31, 1_0 dead letter 10, another request
// retried than the one meant. A leading zero is a decimal number's.
type decimal uint64

func (d *decimal) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return err
	}
	*d = decimal(n)
	return nil
}

func (d *decimal) String() string { return strconv.FormatUint(uint64(*d), 10) }

func (d *decimal) Type() string { return "uint64" }

// Takes is what a value must read as, for the error of one that does not.
func (d *decimal) Takes() string {
	return "a dead letter's sequence, a whole number as dead ls shows it"
}

func (c *cli) retryDead(ctx context.Context, tenant string, seq uint64, codes codeFilter) error {
	// Every code is read: a request id's latest dead letter decides
	// whether --code picks it. One that failed with the code and then,
	// retried, with another (cancelled by an operator, say) is not
	// retried for the older failure.
	x := newDeadIndex(seq, codes)
	if err := c.eachChecked(ctx, tenant, x.add); err != nil {
		return err
	}
	picked := x.picked()
	if seq == 0 && len(codes) == 0 {
		picked = c.leaveOutStanding(picked)
	}
	if seq != 0 {
		// An older dead letter of a request id is retried from the
		// latest, as --all does: its own attempt was published before
		// (the latest is its retry), and the stream would drop the repeat.
		if x.named == nil {
			return c.notOfTenant(ctx, tenant, seq)
		}
		latest := x.latestOf(*x.named)
		switch {
		case x.withCode(latest):
		case latest.Seq == seq:
			return fmt.Errorf("no dead letter %d of tenant %s%s", seq, tenant, codeNote(codes))
		default:
			return fmt.Errorf("dead letter %d of tenant %s: %s failed again since: its latest dead letter is %d, with code %s, not %s",
				seq, tenant, shownID(latest.RequestID), latest.Seq, printable(latest.Code), codes)
		}
		picked = []deadLetter{latest}
	}
	kept, err := c.answersKept(ctx, picked)
	if err != nil {
		return err
	}
	now := time.Now()
	called := map[string]time.Time{}
	answered, err := c.answeredSince(ctx, tenant, picked, x.highest, x.first, kept.mayForget(now), called)
	if err != nil {
		return err
	}
	markForgotten(picked, called, kept, now)
	waiting, err := c.retriesWaiting(ctx, tenant, picked, x.highest)
	if err != nil {
		return err
	}
	return c.retryEach(ctx, tenant, picked, x.highest, answered, waiting, c.budgetLeft(ctx, tenant))
}

// retriesWaiting reads the tenant's requests waiting in the request
// stream and returns the picked dead letters' request ids whose retry,
// as retryEach would publish it (the same attempt, the same message id),
// waits there: published by an earlier dead retry and not answered yet
// (a tenant paused, a budget spent). Published again, it would be
// dropped as a repeat only within the stream's duplicate window, and
// stored a second time after it, to be worked on twice.
func (c *cli) retriesWaiting(ctx context.Context, tenant string, picked []deadLetter, highest map[string]int) (map[string]bool, error) {
	want := map[string]string{} // the retry's message id: its request id
	for _, d := range picked {
		if !ofRequest(d) || !offboard.ValidRequestID(d.RequestID) {
			continue
		}
		if attempt, err := nextAttempt(d, highest[d.RequestID]); err == nil {
			want[offboard.RequestMsgID(tenant, d.RequestID, attempt)] = d.RequestID
		}
	}
	out := map[string]bool{}
	if len(want) == 0 {
		return out, nil
	}
	js, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		err := scan(ctx, js, offboard.StreamRequests, c.subjects.Request(tenant, p), func(m jetstream.Msg) {
			if id, ok := want[m.Headers().Get(jetstream.MsgIDHeader)]; ok {
				out[id] = true
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// notOfTenant is the error of --seq N when the tenant has no dead letter
// N: whose it is (a sequence copied from dead ls under the wrong tenant),
// or that the stream no longer holds it (removed, or past its limits),
// where a single answer for both left the operator to guess.
func (c *cli) notOfTenant(ctx context.Context, tenant string, seq uint64) error {
	notHere := fmt.Errorf("no dead letter %d of tenant %s", seq, tenant)
	js, err := c.connect(ctx)
	if err != nil {
		return notHere
	}
	s, err := js.Stream(ctx, offboard.StreamDead)
	if err != nil {
		return notHere
	}
	m, err := s.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("%w: %s does not hold it (removed, or past the stream's limits); dead ls %s lists those it holds", notHere, offboard.StreamDead, tenant)
	case err != nil:
		return notHere // not allowed to read it by sequence, say: no more is known
	}
	other, ok := strings.CutPrefix(m.Subject, c.subjects.Dead(""))
	switch {
	case !ok:
		return fmt.Errorf("%w: dead letter %d is on %s, under another subject prefix than %s", notHere, seq, offboard.Quote(m.Subject), c.prefix)
	case other == queue.UnknownTenant || !offboard.TenantName.MatchString(other):
		return fmt.Errorf("%w: dead letter %d is under %s, of a subject whose tenant is no tenant name, and cannot be retried", notHere, seq, offboard.Quote(other))
	}
	return fmt.Errorf("dead letter %d is tenant %s's, not %s's: offboardctl dead retry %s --seq %d retries it", seq, other, tenant, other, seq)
}

// leaveOutStanding drops from --all without --code the dead letters of
// requests whose answer stands, and says how many of each: those a
// campaign's cancel answered (each retry would be cancelled again, with a
// result and a dead letter more), and those a guard refused. A guard's
// refusal is a decision, not a passing failure: retried with the
// transient ones after an outage, a request whose guard was lifted since
// (a tag taken off the device, a tenants file changed) would offboard its
// device though nobody asked again. --code cancelled or --code
// blocked_by_policy retries them (a cancel mark deleted by hand, a guard
// that was wrong).
func (c *cli) leaveOutStanding(picked []deadLetter) []deadLetter {
	for _, s := range []struct{ code, what, why string }{
		{offboard.CodeCancelled, "of cancelled campaigns", "the cancel stands, and a retry would be cancelled again"},
		{offboard.CodeBlockedByPolicy, "refused by a guard", "the refusal stands, and a retry would offboard the device if the guard was lifted since"},
	} {
		n := len(picked)
		picked = slices.DeleteFunc(picked, func(d deadLetter) bool { return ofRequest(d) && d.Code == s.code })
		if left := n - len(picked); left > 0 {
			letters := "dead letters"
			if left == 1 {
				letters = "dead letter"
			}
			fmt.Fprintf(c.stdout, "%d %s %s left out: %s; --code %s retries them\n", left, letters, s.what, s.why, s.code)
		}
	}
	return picked
}

// markForgotten marks each picked dead letter stored longer ago than the
// answers of its request id are kept (kept): a retry of it may
// have created an action since, and left neither a result for
// answeredSince to find nor a ledger entry for the worker to answer
// from. Retried, it would be taken for a new request: a second offboard
// call for the device.
//
// It marks too each one whose request id was answered failed after
// offboard calls in a ledger entry written longer ago than the ledger
// keeps one (called, as answeredSince read them); the dead letter of a
// copy sent again and answered from the entry is younger than it. Their
// effect may not have been known (an answer lost, an action lists did
// not show yet): a retry looks for the
// action they made before it calls, from the calls the id's entry keeps.
// With the entry gone, the retry is taken for a new request, and its
// call, which the API takes once that action has finished, makes a
// second action for the device. Results are kept for ever by default,
// ledger entries 30 days.
func markForgotten(picked []deadLetter, called map[string]time.Time, kept answers, now time.Time) {
	for i, d := range picked {
		switch {
		case !ofRequest(d) || kept.ledger == 0:
		case kept.results != 0 && d.Stored.Before(keptSince(now, max(kept.results, kept.ledger))):
			picked[i].forgotten = fmt.Errorf("it is %s old, older than the answers the worker keeps (results %s, ledger entries %s): "+
				"whether %s was answered since cannot be told, and its retry could be taken for a new request; check the device, then publish it anew",
				age(now.Sub(d.Stored)), age(kept.results), age(kept.ledger), shownID(d.RequestID))
		case !called[d.RequestID].IsZero() && called[d.RequestID].Before(keptSince(now, kept.ledger)):
			picked[i].forgotten = fmt.Errorf("%s was answered failed after offboard calls %s ago, longer than the worker keeps ledger entries (%s): "+
				"the action they may have made can no longer be looked for before its retry calls, which could make a second action for the device; "+
				"check the device's actions, then publish it anew",
				shownID(d.RequestID), age(now.Sub(called[d.RequestID])), age(kept.ledger))
		}
	}
}

// keptSince is the time before which what was stored is no longer kept,
// kept being how long it is (zero time for 0: kept for ever). The margin
// stands for a difference between this clock and the server's, which
// stored it.
func keptSince(now time.Time, kept time.Duration) time.Time {
	if kept == 0 {
		return time.Time{}
	}
	return now.Add(min(resultsMargin, kept/10) - kept)
}

// answers is how long the results stream keeps a result and the ledger
// an entry (0: for ever), and the results stream's duplicate window.
type answers struct{ results, ledger, repeats time.Duration }

// mayForget is the time before which a request id's first dead letter
// kept was stored when the ledger may have forgotten the id (zero: it
// keeps entries for ever). A copy sent again within the results stream's
// duplicate window of the result its entry was written with is answered
// from the entry, its result dropped as a repeat: its dead letter, the
// first kept once the earlier one is removed, is younger than the entry
// by up to that window.
func (a answers) mayForget(now time.Time) time.Time {
	t := keptSince(now, a.ledger)
	if t.IsZero() {
		return t
	}
	return t.Add(a.repeats)
}

// answersKept reads how long the answers of the picked dead letters'
// request ids are kept; none when none is of a request.
func (c *cli) answersKept(ctx context.Context, picked []deadLetter) (answers, error) {
	var kept answers
	if !slices.ContainsFunc(picked, ofRequest) {
		return kept, nil
	}
	js, err := c.connect(ctx)
	if err != nil {
		return kept, err
	}
	for _, v := range []struct {
		stream string
		kept   *time.Duration
	}{{offboard.StreamResults, &kept.results}, {"KV_" + offboard.BucketLedger, &kept.ledger}} {
		s, err := js.Stream(ctx, v.stream)
		if err != nil {
			return answers{}, fmt.Errorf("stream %s: %w", v.stream, err)
		}
		*v.kept = s.CachedInfo().Config.MaxAge
		if v.stream == offboard.StreamResults {
			kept.repeats = s.CachedInfo().Config.Duplicates
		}
	}
	return kept, nil
}

// answeredSince reads the tenant's results and returns, for each picked
// dead letter's request id, its latest result other than failed stored
// after that dead letter: the id was answered since (a retry created an
// action, say). It sets called of each request id with a failed result
// read that counts offboard calls (markForgotten) to when its ledger
// entry was written: the first result stored of its highest attempt, as
// a copy sent again is answered from the entry, which is not written
// again, and its result, published anew, is younger than the entry. The
// results are read, for a request id whose first dead letter was stored
// before forgets (the ledger may have forgotten it), from that dead
// letter on (first), since a copy of the
// request sent again and answered from the ledger has a dead letter of
// its own but no result, its result's message id dropped as a repeat;
// and from the first result kept when its first attempt's result is not
// among them (its first dead letter removed). Within the duplicate window the stream would drop its
// retry as a repeat; after it, the retry would be answered from the
// ledger, its result sent again, or, once the ledger has forgotten the
// id, make a second offboard call for the device.
//
// It raises highest, per request id, to the attempt of each result read:
// that attempt was published, and its dead letter may have been removed
// since. A retry under it would be dropped as a repeat, or answered from
// the ledger with the stored failure, no call made.
//
// Results are kept forever by default: only those stored since the
// oldest picked dead letter are read (resultsSince), not a year of them.
func (c *cli) answeredSince(ctx context.Context, tenant string, picked []deadLetter, highest map[string]int,
	first map[string]time.Time, forgets time.Time, called map[string]time.Time,
) (map[string]answer, error) {
	since, from := map[string]time.Time{}, map[string]time.Time{}
	for _, d := range picked {
		if ofRequest(d) {
			since[d.RequestID], from[d.RequestID] = d.Stored, d.Stored
			if first[d.RequestID].Before(forgets) {
				from[d.RequestID] = first[d.RequestID]
			}
		}
	}
	r := &resultsRead{wanted: since, firstRead: map[string]bool{}, before: map[string]bool{}, highest: highest,
		entry: entriesWritten{}, calls: map[string]bool{}, out: map[string]answer{}}
	subject, start := c.subjects.Result(tenant), resultsSince(from)
	r.start = start
	defer r.entry.setCalled(called, r.calls, since)
	if len(since) == 0 {
		return r.out, nil
	}
	js, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.readResults(ctx, js, subject, start, r.add); err != nil {
		return nil, err
	}
	if start.IsZero() || forgets.IsZero() {
		return r.out, nil
	}
	// A request id whose first result was not read, with a first dead
	// letter kept that the ledger may have forgotten, or a result read
	// that was completed before the read's start (the stored result of a
	// copy sent again, published anew), had results before its first dead
	// letter kept (the earlier ones removed by hand, or past a max age set
	// on MDE_OFFBOARD_DEAD): an earlier attempt may have made offboard
	// calls that the later ones' entries kept, or the entry the copy was
	// answered from is older than the copy's result. Its retry, once the
	// ledger forgot the id, could be taken for a new request and make a
	// second action for the device. Its results are read again from the
	// first; rare, as a dead letter is stored just after its result.
	r.wanted, r.start = map[string]time.Time{}, time.Time{}
	for id, t := range since {
		if !r.firstRead[id] && (first[id].Before(forgets) || r.before[id]) {
			r.wanted[id] = t
			delete(r.entry, id) // read again in order, from the first
		}
	}
	if len(r.wanted) == 0 {
		return r.out, nil
	}
	if err := c.readResults(ctx, js, subject, time.Time{}, r.add); err != nil {
		return nil, err
	}
	return r.out, nil
}

// resultsRead is what answeredSince gathers from the results it reads.
type resultsRead struct {
	wanted map[string]time.Time // the request ids read, each with its dead letter's time
	// firstRead are those whose first result was read: of their first
	// attempt, completed no earlier than start, the time the results are
	// read from (a result answered again from the ledger is the stored one,
	// completed when that was).
	firstRead map[string]bool
	start     time.Time
	// before are those with a result read that was completed before
	// start: answered again from the ledger, from a result stored then.
	before  map[string]bool
	highest map[string]int
	entry   entriesWritten
	calls   map[string]bool
	out     map[string]answer
}

func (r *resultsRead) add(m jetstream.Msg) {
	answeredSinceRead.Add(1)
	res, ok := decodeResult(m)
	if !ok {
		return
	}
	after, ok := r.wanted[res.RequestID]
	if !ok {
		return
	}
	r.highest[res.RequestID] = max(r.highest[res.RequestID], res.Attempt)
	if unchecked(res) {
		// A copy of the request whose body failed the request's checks,
		// answered under its request id and attempt (1 unless it said
		// another): not the first attempt's answer, which may be older
		// than the results read, and no ledger entry was written for it.
		return
	}
	meta, err := m.Metadata()
	switch {
	case !res.CompletedAt.IsZero() && res.CompletedAt.Before(r.start):
		r.before[res.RequestID] = true
	case max(res.Attempt, 1) == 1:
		r.firstRead[res.RequestID] = true
	}
	if err == nil {
		r.entry.add(res.RequestID, res.Attempt, meta.Timestamp, res.CompletedAt)
	}
	if res.Outcome == offboard.OutcomeFailed && res.Attempts > 0 {
		r.calls[res.RequestID] = true
	}
	if res.Outcome != offboard.OutcomeFailed && err == nil && meta.Timestamp.After(after) {
		r.out[res.RequestID] = answer{outcome: res.Outcome, attempt: max(res.Attempt, 1)}
	}
}

// unchecked says whether res answers a request that failed the
// request's checks: the worker answers it invalid_request, under a
// message id of its place in the request stream, and writes no ledger
// entry for it.
func unchecked(res *offboard.Result) bool {
	return res.Outcome == offboard.OutcomeFailed && res.Error != nil && res.Error.Code == offboard.CodeInvalidRequest
}

// readResults hands fn the results on subject stored at or after start
// (zero: all), in order; none, without waiting for them, when none was
// stored since.
func (c *cli) readResults(ctx context.Context, js jetstream.JetStream, subject string, start time.Time, fn func(jetstream.Msg)) error {
	more, err := storedAfter(ctx, js, offboard.StreamResults, subject, 0, start)
	if err != nil || !more {
		// None stored since (the most common case): the scan's first
		// fetch would wait out its time for them.
		return err
	}
	return scanWaiting(ctx, js, offboard.StreamResults, subject, start, scanWait, fn)
}

// entriesWritten is, per request id, the highest attempt of its results
// read and when its first result was stored: when the worker wrote the
// ledger entry that a copy sent again is answered from, not written
// again, its result published anew. A result of that attempt completed
// later than the one the entry was written with is of a copy worked on
// anew, the entry gone (forgotten by the ledger, or deleted): a new
// entry was written with it.
type entriesWritten map[string]written

type written struct {
	attempt   int
	at        time.Time
	completed time.Time // the completedAt of the result written with it
}

func (e entriesWritten) add(id string, attempt int, at, completed time.Time) {
	w, ok := e[id]
	if !ok || max(attempt, 1) > w.attempt || max(attempt, 1) == w.attempt && completed.After(w.completed) {
		e[id] = written{attempt: max(attempt, 1), at: at, completed: completed}
	}
}

// setCalled sets called of each request id of calls to when its entry
// was written; to its dead letter's time (since) when that is not known.
func (e entriesWritten) setCalled(called map[string]time.Time, calls map[string]bool, since map[string]time.Time) {
	for id := range calls {
		if called[id] = e[id].at; called[id].IsZero() {
			called[id] = since[id]
		}
	}
}

// resultsMargin is how much earlier than the oldest picked dead letter
// answeredSince starts to read results. Both times are the server's (a
// worker's clock plays no part), but a cluster's servers may disagree by
// a little, and a server whose clock was set back stores later messages
// with earlier times, which a read from a start time may pass over. A
// few minutes more of results is cheap to read; a result missed would
// retry a request that was answered.
var resultsMargin = 5 * time.Minute

// answeredSinceRead counts the results answeredSince has read, for tests.
var answeredSinceRead atomic.Int64

// resultsSince is the time from which answeredSince reads results: the
// oldest of the dead letters' stored times, less resultsMargin; zero
// (from the first) when one's time is not known.
func resultsSince(since map[string]time.Time) time.Time {
	var oldest time.Time
	for _, t := range since {
		if t.IsZero() {
			return time.Time{}
		}
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return oldest
	}
	return oldest.Add(-resultsMargin)
}

// answer is a request id's result as answeredSince found it.
type answer struct {
	outcome offboard.Outcome
	attempt int
}

// retryEach re-publishes each picked dead letter as its request id's next
// attempt after the highest one, and says what became of each. One
// answered since (answered), or whose retry waits (waiting), is not.
func (c *cli) retryEach(ctx context.Context, tenant string, picked []deadLetter, highest map[string]int, answered map[string]answer, waiting map[string]bool,
	room *budgetRoom,
) error {
	var retried, dup, left, since, unknown int
	var errs []error
	stopped := false // at a retry not published, rather than interrupted
	// The retries in the request stream, by priority, for behindAPause.
	sent := map[offboard.Priority]int{}
	for i, d := range picked {
		if ctx.Err() != nil {
			// Interrupted: this one and those after it are not retried;
			// the same command retries them.
			left = len(picked) - i
			break
		}
		if a, ok := answered[d.RequestID]; ok && ofRequest(d) {
			since++
			fmt.Fprintf(c.stdout, "%s was answered since its dead letter %d: %s, attempt %d; not retried\n", shownID(d.RequestID), d.Seq, a.outcome, a.attempt)
			continue
		}
		attempt, ack, err := c.retryUnlessWaiting(ctx, tenant, d, highest[d.RequestID], waiting, sent)
		switch {
		case errors.Is(err, errRetryWaits):
			dup++
			fmt.Fprintf(c.stdout, "%s attempt %d was retried before (dead letter %d, %s); it waits in %s\n",
				d.RequestID, attempt, d.Seq, printable(d.Code), offboard.StreamRequests)
		case err != nil && ctx.Err() != nil:
			left = len(picked) - i // its retry may have been stored: run again, the stream drops a repeat
		case err != nil:
			var stop bool
			if errors.As(err, new(unansweredRetry)) {
				unknown++
			}
			stop, err = retryFailed(d, err)
			fmt.Fprintln(c.stdout, err)
			errs = append(errs, err)
			if stop {
				left, stopped = len(picked)-i-1, true
			}
		case ack.Duplicate:
			dup++
			fmt.Fprintf(c.stdout, "%s attempt %d was retried before (dead letter %d, %s)\n", d.RequestID, attempt, d.Seq, printable(d.Code))
		default:
			retried++
			fmt.Fprintf(c.stdout, "retried %s attempt %d (dead letter %d, %s)\n", d.RequestID, attempt, d.Seq, printable(d.Code))
		}
		if left > 0 {
			break
		}
	}
	fmt.Fprintf(c.stdout, "%d retried, %d retried before (the stream dropped the repeat), %d not retried, %d answered since%s\n%s",
		retried, dup, len(errs)-unknown+left, since, notKnownRetried(unknown), c.behindAPause(ctx, tenant, sent, room)+c.noWorkerNote(ctx, tenant, sent))
	if stopped {
		return stoppedAt(errs, left)
	}
	return notRetried(ctx, errs, left)
}

// notKnownRetried is the summary's part on the retries whose publish got
// no answer: "" when none.
func notKnownRetried(unknown int) string {
	if unknown == 0 {
		return ""
	}
	return fmt.Sprintf(", %d not known to be retried (no answer)", unknown)
}

// priorityOf is the priority of a dead letter's retry: that of its
// original subject, where the retry goes.
func (c *cli) priorityOf(d deadLetter) offboard.Priority {
	_, p, _ := c.subjects.ParseRequest(d.subject)
	return p
}

// behindAPause is a line on how many of the retries in the request
// stream (sent, by priority) an operator's pause holds, and how to let
// them go: the worker takes none of a paused priority's requests, and
// they would wait unanswered with nothing said. Without a pause that
// holds them, the line on those a spent budget holds (room, as read
// before they were published). "" when none is held, or when the
// controls cannot be read.
func (c *cli) behindAPause(ctx context.Context, tenant string, sent map[offboard.Priority]int, room *budgetRoom) string {
	if sent[offboard.Normal]+sent[offboard.Bulk] == 0 {
		return ""
	}
	js, err := c.connect(ctx)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	store, err := control.Open(ctx, js, c.subjects)
	if err != nil {
		return ""
	}
	view, err := store.Load(ctx)
	if err != nil {
		return ""
	}
	held := 0
	var ps []string
	for _, p := range control.Priorities {
		if sent[p] > 0 && view.Paused(tenant, p) {
			held += sent[p]
			ps = append(ps, string(p))
		}
	}
	if held == 0 {
		return room.behind(tenant, sent[offboard.Normal]+sent[offboard.Bulk])
	}
	resume := ps[0]
	if len(ps) > 1 {
		resume = control.PriorityAll
	}
	return fmt.Sprintf("%d of them wait behind the pause of %s's %s requests: offboardctl resume %s --priority %s lets them go\n",
		held, tenant, strings.Join(ps, " and "), tenant, resume)
}

// noWorkerNote is a line on the retries in the request stream (sent, by
// priority) when no worker has announced the tenant lately (a tenant
// removed from the tenants files, its workers stopped): none is answered
// by its tenant's worker, and a worker that runs without serving it
// answers them unknown_tenant, each with a dead letter more. Said only
// "retried", the operator waited for results that did not come. "" when
// a worker serves the tenant, or when the announcements cannot be read.
func (c *cli) noWorkerNote(ctx context.Context, tenant string, sent map[offboard.Priority]int) string {
	n := sent[offboard.Normal] + sent[offboard.Bulk]
	if n == 0 {
		return ""
	}
	js, err := c.connect(ctx)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	announced, now := readAnnounced(ctx, js), time.Now()
	if _, none := workersOf(announced, tenant, now); !none {
		return ""
	}
	what := "none is answered before one runs"
	for other := range announced {
		if _, none := workersOf(announced, other, now); !none {
			what = "the workers running serve other tenants and answer them unknown_tenant, each with a dead letter more"
			break
		}
	}
	waits := "wait"
	if n == 1 {
		waits = "waits"
	}
	return fmt.Sprintf("%d of them %s for a worker: no worker has announced tenant %s lately; %s\n", n, waits, tenant, what)
}

// budgetRoom is the tenant's budget in force and the slots it had left
// before the retries were published: those past them wait in the request
// stream until a slot frees, a day later with a budget of a day.
type budgetRoom struct {
	window limiter.Window
	left   int
}

// budgetLeft reads the budget in force for the tenant as status reads it,
// and the slots it has left now; nil without a budget, or when it cannot
// be read. Read before the retries are published: one the worker takes
// at once spends a slot, and the budget read afterwards looks spent.
func (c *cli) budgetLeft(ctx context.Context, tenant string) *budgetRoom {
	js, err := c.connect(ctx)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	h, err := readBudgetHorizon(ctx, js)
	if err != nil {
		return nil
	}
	store, err := control.Open(ctx, js, c.subjects)
	if err != nil {
		return nil
	}
	view, err := store.Load(ctx)
	if err != nil {
		return nil
	}
	file, _ := fileBudget(ctx, js, tenant)
	var st tenantStatus
	pace, err := readBudgetStatus(ctx, &statusJournals{js: js, subjects: c.subjects}, tenant,
		map[string]string{queue.MetaBudget: file}, view, h, time.Now(), &st)
	if err != nil || pace == nil {
		return nil
	}
	return &budgetRoom{window: pace.window, left: *st.Budget.Left}
}

// behind is a line on how many of n retries in the request stream the
// budget holds, and how to let them go: they would wait unanswered with
// nothing said. "" when it holds none.
func (r *budgetRoom) behind(tenant string, n int) string {
	if r == nil || n <= r.left {
		return ""
	}
	held, wait := n-r.left, "wait"
	if held == 1 {
		wait = "waits"
	}
	return fmt.Sprintf("%d of them %s for %s's budget (%s, %d left): offboardctl budget %s COUNT/WINDOW raises it; else they go as its slots free\n",
		held, wait, tenant, r.window.Spec(), r.left, tenant)
}

// errRetryWaits is a dead letter whose retry was published before and
// waits in the request stream (retriesWaiting): it is not published again.
var errRetryWaits = errors.New("its retry waits in the request stream")

// retryUnlessWaiting re-publishes d as its next attempt after highest,
// unless that retry waits in the request stream already (errRetryWaits).
// It counts the retry in sent, by priority, when it is in the request
// stream, published now or before.
func (c *cli) retryUnlessWaiting(ctx context.Context, tenant string, d deadLetter, highest int, waiting map[string]bool,
	sent map[offboard.Priority]int,
) (int, *jetstream.PubAck, error) {
	attempt, err := nextAttempt(d, highest)
	switch {
	case err != nil:
		return attempt, nil, err
	case waiting[d.RequestID] && ofRequest(d):
		sent[c.priorityOf(d)]++
		return attempt, nil, errRetryWaits
	}
	ack, err := c.retryOne(ctx, tenant, d, attempt)
	if err == nil {
		sent[c.priorityOf(d)]++
	}
	return attempt, ack, err
}

// nextAttempt is the attempt of a dead letter's retry: one more than the
// highest of its request id's dead letters and results (answeredSince);
// none for one older than its answers are kept (markForgotten).
func nextAttempt(d deadLetter, highest int) (int, error) {
	if d.forgotten != nil {
		return 0, d.forgotten
	}
	high := max(highest, d.Attempt)
	if high == math.MaxInt {
		// One more would wrap around to a negative attempt, which the
		// worker refuses as invalid_request.
		return 0, fmt.Errorf("%s is at attempt %d, the highest there is, and cannot be retried under its request id; publish it anew under a new request id",
			shownID(d.RequestID), high)
	}
	return high + 1, nil
}

// retryFailed is the error of a dead letter not retried, and whether the
// retries after it would fail as it did, each after its timeout: a
// retry not published for no permission, the stream full or gone, no
// answer. One refused for its own size does not stop them.
func retryFailed(d deadLetter, err error) (stop bool, why error) {
	if refusedAlone(err) {
		return false, fmt.Errorf("dead letter %d: %w: it is not retried as it is (make it smaller and publish it anew)", d.Seq, err)
	}
	return errors.As(err, new(notPublished)) || errors.As(err, new(unansweredRetry)), fmt.Errorf("dead letter %d: %w", d.Seq, err)
}

// stoppedAt is retryEach's error when it stopped at a retry not
// published, with left dead letters after it not tried.
func stoppedAt(errs []error, left int) error {
	last := errs[len(errs)-1]
	if left == 0 && len(errs) > 1 && errors.As(last, new(unansweredRetry)) {
		// The last may have been retried: counted apart, as the
		// command's last line of output counts it.
		return &severalNotRetried{errs: errs, unknown: 1}
	}
	if left == 0 {
		return notRetried(context.Background(), errs, 0)
	}
	err := fmt.Errorf("stopped with %d dead letters left after %w; run the same command again once NATS takes the retries", left, last)
	if len(errs) > 1 {
		// Those skipped before it (a retry too large, say) are in the
		// exit status too.
		return fmt.Errorf("%w; and %d more not retried (each said why above)", err, len(errs)-1)
	}
	return err
}

// notPublished is a retry that was not published: the server refused it
// or did not answer.
type notPublished struct{ err error }

func (e notPublished) Error() string { return e.err.Error() }
func (e notPublished) Unwrap() error { return e.err }

// retryPublishWait bounds the wait for a retry's acknowledgement.
const retryPublishWait = 10 * time.Second

// inProcessPause is the pause before a message is published again
// whose message id the stream was storing for another publish: a store
// on the replicas takes milliseconds.
const inProcessPause = 20 * time.Millisecond

// publishPastInProcess publishes m, and publishes it again every
// inProcessPause while the stream answers "duplicate message id is in
// process" (queue.InProcess: on a cluster, another publish of the same
// message id not stored yet), for as long as within and ctx allow; that
// answer is returned past them. It says nothing of m's fate; published
// again once the other is stored, m is dropped as its repeat (the
// acknowledgement's Duplicate), or stored if the other was lost.
func publishPastInProcess(ctx context.Context, js jetstream.JetStream, m *nats.Msg, within time.Duration) (*jetstream.PubAck, error) {
	ack, err := js.PublishMsg(ctx, m)
	for until := time.Now().Add(within); queue.InProcess(err) && time.Now().Before(until); {
		pause := time.NewTimer(inProcessPause)
		select {
		case <-ctx.Done():
			pause.Stop()
			return ack, err
		case <-pause.C:
		}
		ack, err = js.PublishMsg(ctx, m)
	}
	return ack, err
}

// retryPublishing is called with a retry's message as it is about to be
// published: a test publishes there.
var retryPublishing = func(jetstream.JetStream, *nats.Msg) {}

// ownWait is a publish that ran out a wait of the command's own, which
// --connect-timeout does not set: explainNoResponders does not tell to
// raise it, as it did after a retry refused or left unanswered.
type ownWait struct{ err error }

func (e ownWait) Error() string { return e.err.Error() }
func (e ownWait) Unwrap() error { return e.err }

// unansweredRetry is a retry sent whose publish got no answer: it may
// have been stored, and is not counted among those not retried. Told
// "not retried", it was worked on all the same.
type unansweredRetry struct{ err error }

func (e unansweredRetry) Error() string { return e.err.Error() }
func (e unansweredRetry) Unwrap() error { return e.err }

// refusedAlone says whether a retry was refused for something of its own
// (its size over the request stream's max_msg_size or the server's
// max_payload, its headers over the server's limit), which the retries
// of other dead letters need not meet: retryEach goes on past it, where
// it stops at a refusal every retry would meet (no permission, no stream,
// no answer).
func refusedAlone(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamMessageExceedsMaximum, jsErrCodeStreamHeaderExceedsMaximum:
			return true
		}
	}
	return errors.Is(err, nats.ErrMaxPayload)
}

// jsErrCodeStreamHeaderExceedsMaximum is the server's refusal of a
// message whose headers are over its limit (64 KiB); nats.go names no
// constant for it.
const jsErrCodeStreamHeaderExceedsMaximum jetstream.ErrorCode = 10097

// notRetried is retryEach's error, one line: why the one dead letter not
// retried was not, or how many were not (each told on its own line of
// the output as it came), and the interruption that left some.
func notRetried(ctx context.Context, errs []error, left int) error {
	var failed error
	switch len(errs) {
	case 0:
	case 1:
		failed = errs[0]
	default:
		failed = &severalNotRetried{errs: errs}
	}
	if left == 0 {
		return failed
	}
	interrupted := fmt.Errorf("interrupted with %d dead letters left (%w); run the same command again to retry them", left, context.Cause(ctx))
	if failed == nil {
		return interrupted
	}
	return fmt.Errorf("%w; and %w", interrupted, failed)
}

// severalNotRetried is the error of dead letters not retried, each told
// on its own line of the output: one line that counts them, where
// errors.Join would write each on a line of its own without the command's
// name.
type severalNotRetried struct {
	errs []error
	// unknown: how many of errs are retries not known to be retried
	// (unansweredRetry), not counted among those not retried.
	unknown int
}

func (e *severalNotRetried) Error() string {
	if e.unknown > 0 {
		return fmt.Sprintf("%d dead letters not retried, %d not known to be retried (no answer; each said why above)", len(e.errs)-e.unknown, e.unknown)
	}
	return fmt.Sprintf("%d dead letters not retried (each said why above)", len(e.errs))
}

func (e *severalNotRetried) Unwrap() []error { return e.errs }

func codeNote(codes codeFilter) string {
	if len(codes) == 0 {
		return ""
	}
	return " with code " + codes.String()
}

// ofRequest says whether a dead letter counts as one of its request id's:
// it has one, its body passes the request's checks and it came on a
// request subject of its tenant.
func ofRequest(d deadLetter) bool { return d.RequestID != "" && d.unchecked == nil }

// retryOne re-publishes one dead letter as the given attempt.
func (c *cli) retryOne(ctx context.Context, tenant string, d deadLetter, attempt int) (*jetstream.PubAck, error) {
	if d.RequestID == "" {
		return nil, errors.New("its body has no request id: it cannot be retried under one (fix it and publish it anew)")
	}
	if !offboard.ValidRequestID(d.RequestID) {
		// The worker would refuse the retry as it refused the request;
		// and the id would go into the retry's Nats-Msg-Id header.
		return nil, fmt.Errorf("its request id %s is not one ([A-Za-z0-9._:-]{1,128}): it cannot be retried under it (fix it and publish it anew)", shownID(d.RequestID))
	}
	if t, _, ok := c.subjects.ParseRequest(d.subject); !ok || t != tenant {
		return nil, fmt.Errorf("its original subject %s is not a request subject of tenant %s", offboard.Quote(d.subject), tenant)
	}
	if d.unchecked != nil {
		// Its retry would fail them again; or, when only its attempt
		// was wrong, pass them with the attempt written here and take
		// bad input to the API.
		return nil, fmt.Errorf("its body fails the request's checks (%w): it is not retried as it is (fix it and publish it anew)", d.unchecked)
	}
	body, err := withAttempt(d.body, attempt)
	if err != nil {
		return nil, err
	}
	if _, err := offboard.ParseRequest(body, tenant); err != nil {
		// A body just under the request's size that its attempt takes
		// over it: the request stream takes it (it leaves room for
		// headers), and the worker would answer it invalid_request.
		return nil, fmt.Errorf("its retry with attempt %d fails the request's checks (%w): it is not retried as it is (make it smaller and publish it anew)", attempt, err)
	}
	m := nats.NewMsg(d.subject)
	m.Data = body
	for k, vs := range d.header {
		// The publisher's own headers go with the retry; the dead-letter
		// ones and the server's do not.
		if strings.HasPrefix(k, "Mde-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		m.Header[k] = vs
	}
	m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID(tenant, d.RequestID, attempt))
	js, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, retryPublishWait)
	defer cancel()
	retryPublishing(js, m)
	// A copy under the same message id (another operator's retry, on a
	// cluster) may be being stored: published again once it is, the
	// retry is dropped as its repeat.
	ack, err := publishPastInProcess(pctx, js, m, retryPublishWait)
	if err != nil && ctx.Err() == nil && pctx.Err() != nil {
		// The wait is the retry's own, not --connect-timeout's.
		err = ownWait{err}
	}
	if err != nil && ctx.Err() == nil && control.Unanswered(err) && !queue.PublishRefused(js.Conn(), d.subject) {
		// Sent, and no answer: the stream may have stored it (its
		// leader lost between its write and its reply, on a cluster).
		return nil, unansweredRetry{fmt.Errorf("the retry of %s attempt %d got no answer in %v, and may have been published (%w): the same command again tells, and publishes it only if it was not",
			d.RequestID, attempt, retryPublishWait, err)}
	}
	if err != nil {
		return nil, notPublished{fmt.Errorf("publish the retry of %s: %w", d.RequestID, err)}
	}
	return ack, nil
}
