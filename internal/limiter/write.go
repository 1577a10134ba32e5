package limiter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// This file holds the journal writes of a tenant: a call's entry before
// it is sent (Record), and the ends and pauses written as they come
// (writePending). Both go through write, which appends after the tenant's
// last entry this process has seen and follows conflicts.

// wakeWriterLocked has what is pending written: it wakes the tenant's
// writer, or starts one. A writer runs only while something is pending:
// an idle tenant costs no goroutine.
func (t *Tenant) wakeWriterLocked() {
	select {
	case t.flush <- struct{}{}:
	default:
	}
	if t.writing || t.shared == nil {
		return
	}
	t.writing = t.shared.startWriter(t.writePending)
}

// Record enters the call in the journal before it is sent, waiting while
// the journal leaves no room for it. It returns when the call's answer is
// due at the latest: the call must be given up by then. Without a journal
// it returns at once with a zero time.
func (p *Permit) Record(ctx context.Context) (due time.Time, err error) {
	_, err = p.record(ctx, true)
	return p.due, err
}

// TryRecord is Record for a caller that waits for room its own way: when
// the journal leaves no room for the call (another process took the last
// place first), it returns false at once, the permit still held, for the
// caller to release. Without a journal it returns true at once.
func (p *Permit) TryRecord(ctx context.Context) (bool, error) {
	return p.record(ctx, false)
}

// record enters the call in the journal; without wait, it reports false
// rather than wait for room.
func (p *Permit) record(ctx context.Context, wait bool) (entered bool, err error) {
	t := p.l.tenant
	if t.shared == nil || p.id != 0 {
		return true, nil
	}
	t.mu.Lock()
	t.recording = append(t.recording, p)
	t.mu.Unlock()
	defer func() { p.leaveRecording(entered) }()
	for {
		t.wmu.Lock()
		done, room, err := p.tryRecord(ctx)
		t.wmu.Unlock()
		switch {
		case err != nil:
			return false, err
		case done:
			return true, nil
		case room != nil && !wait:
			return false, nil
		case room != nil:
			// Waiting without wmu: the ends of this process's calls,
			// which make room, must get written meanwhile.
			if err := t.wait(ctx, room.changed, room.now, room.next, room.ok); err != nil {
				return false, err
			}
		}
	}
}

// leaveRecording takes p off the permits waiting to be entered. Unless p
// was entered (then no write can take it along any more), it takes wmu
// first: a write that took p along, and its undoing if it failed, is over
// before p's Record returns.
func (p *Permit) leaveRecording(entered bool) {
	t := p.l.tenant
	if !entered {
		t.wmu.Lock()
		defer t.wmu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recording = slices.DeleteFunc(t.recording, func(q *Permit) bool { return q == p })
}

// noRoom is what a Record that found no room in the windows waits for
// (see Tenant.wait).
type noRoom struct {
	changed   <-chan struct{}
	now, next time.Time
	ok        bool
}

// tryRecord makes one attempt at entering the call, with t.wmu held,
// together with every other permit waiting to be entered that the windows
// have room for. It reports done once p is entered (by this attempt or an
// earlier one that took it along); wait when the windows leave no room
// for p; neither after a conflict the feed has caught up with (try
// again).
func (p *Permit) tryRecord(ctx context.Context) (done bool, wait *noRoom, err error) {
	t := p.l.tenant
	t.mu.Lock()
	if p.id != 0 { // entered with another permit's entry
		t.mu.Unlock()
		return true, nil, nil
	}
	batch, calls, wait := p.batchLocked(t.clock.Now())
	if wait != nil && len(batch) == 0 {
		t.mu.Unlock()
		return false, wait, nil
	}
	ev := t.takePendingLocked()
	ev.Reserved = calls
	last := t.lastSeq
	t.mu.Unlock()
	written, err := t.write(ctx, ev, last)
	if !written {
		t.undo(batch)
	}
	if err != nil || !written {
		return false, nil, err
	}
	if wait != nil {
		return false, wait, nil // the others went; p waits for room
	}
	return true, nil, nil
}

// batchLocked picks the permits waiting to be entered that the windows
// have room for at now, in the order they came, and counts them as under
// way: each sees the ones before it. wait is set when p is not among
// them. t.mu held.
func (p *Permit) batchLocked(now time.Time) (batch []*Permit, calls []Call, wait *noRoom) {
	t := p.l.tenant
	gen := t.shared.stepsSeen()
	// The others count a call under way until its due time by their
	// clocks: written by a clock of this process's found behind the
	// server's (within half this process's margin, which may be wider
	// than theirs), it would end early for them by as much, as a pause
	// or an end would. Its call still ends by the due time as taken.
	behind := t.shared.behind()
	for _, q := range t.recording {
		if q.id != 0 {
			continue
		}
		// A permit handed out ahead of its place (NotBefore) is entered
		// if the place frees by then: its call does not go out earlier.
		// A time to look again is no place.
		next, ok, recheck := q.l.nextLocked(now, q.low, true)
		at := now
		if !recheck && q.notBefore.After(now) {
			at = q.notBefore
		}
		if !ok || next.After(at) {
			if q == p {
				wait = &noRoom{changed: t.changed, now: now, next: next, ok: ok}
			}
			continue
		}
		q.l.held--
		q.l.reserved++
		t.nextID++
		q.id, q.due, q.gen = t.nextID, now.Add(t.shared.opts.Lease), gen
		batch = append(batch, q)
		calls = append(calls, Call{API: q.l.api, ID: q.id, At: addNanos(q.due.UnixNano(), behind)})
	}
	return batch, calls, wait
}

// undo takes back the counting of a batch whose entry was not written.
func (t *Tenant) undo(batch []*Permit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, q := range batch {
		q.l.held++
		q.l.reserved--
		q.id, q.due = 0, time.Time{}
	}
	t.notifyLocked()
}

// write appends ev, made of what was pending and, for calls about to be
// sent, their reservations, after the tenant's entry numbered last. The
// caller holds t.wmu. Once written, the tenant's last entry moves on; it
// reports true. Otherwise what was pending is
// put back; after a conflict it returns false and nil once the feed has
// brought the entries that came first, so the caller tries again; any
// other failure is returned.
func (t *Tenant) write(ctx context.Context, ev Event, last uint64) (bool, error) {
	seq, sent, err := t.append(ctx, ev, last)
	t.mu.Lock()
	if err == nil {
		t.lastSeq = max(t.lastSeq, seq)
		for _, c := range ev.Done {
			delete(t.stored, c.ID) // the feed brought it before its answer came
		}
		t.mu.Unlock()
		return true, nil
	}
	reserved := ev.Reserved
	ev.Reserved = nil
	t.restorePendingLocked(ev)
	var conflict *ConflictError
	if len(reserved) > 0 && sent && !errors.As(err, &conflict) && !errors.Is(err, ErrNotStored) {
		// The entry may have been stored all the same (its answer lost):
		// its end, as a call never sent, lets the others forget it. One
		// refused, before it was sent or by the journal, holds nothing:
		// an end would only wait, with every such refusal's, to be
		// written, and go in one entry with them all.
		for _, c := range reserved {
			t.pending.Done = append(t.pending.Done, Call{API: c.API, ID: c.ID, due: c.At, lost: true})
		}
	}
	if !t.pending.empty() {
		// Written later by the background writer: a Flush's or a
		// Record's write may have taken it while that writer ended,
		// finding nothing pending, and a pause put back here would
		// otherwise wait for the tenant's next call.
		t.wakeWriterLocked()
	}
	t.mu.Unlock()
	return false, t.afterConflict(ctx, err, last)
}

// append is Journal.Append, refused once an entry of the tenant was
// stored under a number the feed had read past before it was sent. A
// journal gives every new entry a number after all it holds, so that
// journal was made anew, or lost its last entries: the entries written
// there under numbers the feed has read past never reach this process,
// which cannot count them, and a conflict's answer naming one may lie
// below where the feed began, where it reads like an entry too old to
// count. No call of the tenant goes out from this process until it
// starts again and reads the journal as it is. The entry stored holds
// its calls for the others until they are due. sent says whether ev
// went to the journal.
func (t *Tenant) append(ctx context.Context, ev Event, last uint64) (seq uint64, sent bool, err error) {
	t.mu.Lock()
	gone := t.gone
	t.mu.Unlock()
	if gone == nil {
		gone = t.shared.remadeErr()
	}
	if gone != nil {
		return 0, false, gone
	}
	read := t.shared.feedAt()
	seq, err = t.shared.opts.Journal.Append(ctx, t.name, ev, last)
	if err != nil || seq > read {
		return seq, true, err
	}
	gone = fmt.Errorf("%w (an entry was stored as %d, this process's feed had read up to %d): restart the worker", ErrJournalEntryGone, seq, read)
	t.mu.Lock()
	t.gone = gone
	t.mu.Unlock()
	return 0, true, gone
}

// afterConflict handles a failed Append that expected to follow the
// entry numbered last: after a conflict it waits until the feed has
// brought the entries that came first (nil: try again); any other error
// is returned.
func (t *Tenant) afterConflict(ctx context.Context, err error, last uint64) error {
	var conflict *ConflictError
	if !errors.As(err, &conflict) {
		if ctx.Err() == nil {
			t.shared.metrics.failures.Inc()
		}
		return fmt.Errorf("%s of tenant %s: %w", t.shared.opts.Name, t.name, err)
	}
	t.shared.metrics.conflicts.Inc()
	// Compared with the entry the write expected to follow, not with the
	// last one the feed has brought since: another replica's entry that
	// came after the conflict's answer, and that the feed brought
	// meanwhile, is no sign of an entry gone.
	if conflict.Last != 0 && conflict.Last < last {
		// The tenant's entry this process last saw is no longer the
		// journal's last, and none came after it: it was deleted, or the
		// journal lost its last entries or was made anew and numbers
		// entries again. Then entries written under those numbers never
		// reach this process's feed, which has read past them, and it
		// cannot count them: no call of the tenant goes out from it until
		// it starts again and reads the journal as it is.
		return t.entryGone(conflict.Last, last)
	}
	reached, err := t.shared.waitFeed(ctx, conflict.Last, 5*time.Second)
	if err != nil || !reached {
		return err // not reached: the next attempt meets the conflict again
	}
	from := t.shared.feedFrom()
	t.mu.Lock()
	defer t.mu.Unlock()
	if conflict.Last > t.lastSeq && conflict.Last >= from {
		// The feed reads every entry from its first on, and has passed
		// this one without bringing it: the journal was made anew and
		// numbers entries again, below where the feed reads. This entry
		// (after one of this process's, say, written in the new journal
		// while none of the tenant's was there) is another process's,
		// which it cannot count.
		return t.entryGone(conflict.Last, t.lastSeq)
	}
	// The feed has passed the journal's last entry: either it applied it,
	// or the entry is older than anything that still counts. Last 0: the
	// tenant's entries all aged out of the journal.
	if conflict.Last > t.lastSeq || conflict.Last == 0 {
		t.lastSeq = conflict.Last
	}
	return nil
}

// entryGone is the error of a tenant whose journal this process can no
// longer follow: the journal's last entry is last, and this process saw
// saw.
func (t *Tenant) entryGone(last, saw uint64) error {
	t.shared.metrics.failures.Inc()
	return fmt.Errorf("%s of tenant %s: %w (its last entry is %d, this process saw %d): restart the worker",
		t.shared.opts.Name, t.name, ErrJournalEntryGone, last, saw)
}

// ErrJournalEntryGone says that the tenant's last entry in the journal
// that this process saw is gone, and no entry came after it.
var ErrJournalEntryGone = errors.New("the tenant's last entry in the journal is gone (deleted, or the journal lost entries or was made anew)")

func (t *Tenant) takePendingLocked() Event {
	ev := t.pending
	ev.Writer = t.shared.opts.Writer
	ev.Written, ev.Gen = t.shared.Stamp()
	t.pending = Event{}
	// An end the journal holds already (stored) is not written again.
	// The end of a call whose entry's answer was lost lets the others
	// forget it before its due time, if the entry was stored. Past it,
	// the others count the call as ended then (an end only lets some of
	// them forget it sooner), and it is dropped: kept, such ends gathered
	// while the journal's answers were lost, one for each request that
	// came back, until the entry carrying them all was larger than NATS
	// takes.
	now := t.clock.Now().UnixNano()
	ev.Done = slices.DeleteFunc(ev.Done, func(c Call) bool {
		if _, ok := t.stored[c.ID]; ok {
			delete(t.stored, c.ID) // in the journal already
			return true
		}
		return c.lost && c.due <= now
	})
	// The others read an end by their clocks: one dated by a clock of
	// this process's found behind the server's since the call went out
	// (not stepped: a virtual machine paused and resumed), or stepped
	// back and not measured since, would leave their windows early by as
	// much. It is written that much later, as a pause is.
	behind := t.shared.behind()
	for i, c := range ev.Done {
		if c.At == 0 {
			continue // never sent
		}
		// From the time as answered, not as last written: an end put
		// back by a failed write is not moved on again.
		at := addNanos(c.answered, behind)
		if c.gen != ev.Gen {
			// The wall clock was stepped since the call was entered: read
			// by it, the end may be dated before the server counted the
			// call. It is written at the call's due time, by the clock
			// as it was then, unless dated later.
			at = max(at, c.due)
		}
		ev.Done[i].At = at
	}
	return ev
}

// restorePendingLocked puts back what a failed Append did not write.
func (t *Tenant) restorePendingLocked(ev Event) {
	t.pending.Done = append(ev.Done, t.pending.Done...)
	t.pending.Paused = max(t.pending.Paused, ev.Paused)
}

// writePending writes call ends and pauses until nothing is pending, or
// until ctx ends.
func (t *Tenant) writePending(ctx context.Context) {
	stop := ctx.Done()
	for {
		if !t.linger(stop) {
			return
		}
		for attempt := 0; ; attempt++ {
			err := t.writeOnce(ctx)
			if ctx.Err() != nil {
				// Stopped: Close writes what is pending. A pause put back
				// by a write that failed on ctx would otherwise bring the
				// loop round again at once, and Close would wait for ever.
				return
			}
			if err == nil {
				break
			}
			// Not written: other replicas keep counting the calls until
			// their lease ends, which is safe; try again soon.
			select {
			case <-stop:
				return
			case <-t.clock.After(t.shared.backoff(attempt)):
			}
		}
		t.mu.Lock()
		if t.pending.empty() {
			t.writing = false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
}

// DefaultEndsLinger is how long the ends of calls wait to be written, so
// that several go in one entry, or with the next call's reservation.
// Meanwhile other replicas count those calls as under way until their due
// time: safe, and only for that long.
const DefaultEndsLinger = 20 * time.Millisecond

// linger waits up to the ends' linger for more of what is pending to come, or
// not at all once a pause is pending: other replicas must learn of a 429
// at once. It reports false if stop came first. The wait is real time: it
// paces messages to the server, not logic a test controls.
func (t *Tenant) linger(stop <-chan struct{}) bool {
	timer := time.NewTimer(t.shared.opts.EndsLinger)
	defer timer.Stop()
	for {
		t.mu.Lock()
		urgent := t.pending.Paused != 0
		t.mu.Unlock()
		if urgent {
			return true
		}
		select {
		case <-stop:
			return false
		case <-timer.C:
			return true
		case <-t.flush:
		}
	}
}

// writeOnce writes what is pending, following conflicts.
func (t *Tenant) writeOnce(ctx context.Context) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	for {
		t.mu.Lock()
		if t.pending.empty() {
			t.mu.Unlock()
			return nil
		}
		ev := t.takePendingLocked()
		last := t.lastSeq
		t.mu.Unlock()
		if _, err := t.write(ctx, ev, last); err != nil {
			return err
		}
	}
}
