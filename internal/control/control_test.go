package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	return js
}

// A change written by the store reaches a running watcher, which signals
// it and logs who made it and why; the change is also published as an
// event on the tenant's control subject, in the results stream.
func TestStoreAndWatcher(t *testing.T) {
	t.Parallel()
	js := setup(t)
	core, logs := observer.New(zap.InfoLevel)
	w := startWatcher(t, js, zap.New(core))

	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	changed := w.Changed()
	start := time.Now()
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: "bulk", By: "alice", Reason: "CAB-42"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Fatal("no change signal within a second")
	}
	t.Logf("watcher saw the pause %v after the write began", time.Since(start))
	// The signal fires once the entry is applied.
	waitWatcher(t, w, 10*time.Second, "contoso bulk paused", func() bool { return w.Paused("contoso", offboard.Bulk) })
	if w.Paused("contoso", offboard.Normal) {
		t.Error("normal paused too; only bulk was")
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "50/24h", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	waitWatcher(t, w, 10*time.Second, "a budget of contoso", func() bool { _, ok := w.Budget("contoso"); return ok })
	if v, _ := w.Budget("contoso"); v != "50/24h" {
		t.Errorf("budget %q, want 50/24h", v)
	}
	logged := logs.FilterMessage("control changed").FilterField(zap.String("by", "alice")).FilterField(zap.String("reason", "CAB-42"))
	if logged.Len() != 1 {
		t.Errorf("%d log lines of alice's pause, want 1: %v", logged.Len(), logs.All())
	}

	stream, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject("mde.offboard.control.contoso"))
	if err != nil {
		t.Fatal(err)
	}
	var ev control.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Action != control.ActionPause || ev.Priority != "bulk" || ev.By != "alice" || ev.Reason != "CAB-42" || ev.At.IsZero() {
		t.Errorf("event %+v", ev)
	}

	// A watcher started now (a restarted replica) knows both at once.
	view, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !view.Paused("contoso", offboard.Bulk) {
		t.Error("a fresh read misses the pause")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]bool{
		"pause.contoso.normal": true, "pause.contoso.bulk": true, "budget.contoso": true,
		"pause.contoso": false, "pause.contoso.urgent": false, "other.contoso": false,
	} {
		if _, _, _, ok := control.ParseKey(key); ok != want {
			t.Errorf("ParseKey(%q) ok = %v", key, ok)
		}
	}
	if _, err := control.ParsePriority("urgent"); err == nil {
		t.Error("priority urgent accepted")
	}
}

// startWatcher runs a watcher until the test ends and waits until it has
// read the bucket.
func startWatcher(t *testing.T, js jetstream.JetStream, log *zap.Logger) *control.Watcher {
	t.Helper()
	w, err := control.NewWatcher(t.Context(), js, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.For(t, w.Current(), 10*time.Second, "the watcher to read the bucket")
	return w
}

// waitPaused waits until the watcher says contoso's bulk priority is as
// want, at most d.
func waitPaused(t *testing.T, w *control.Watcher, want bool, d time.Duration) {
	t.Helper()
	waitWatcher(t, w, d, fmt.Sprintf("contoso bulk paused %t", want), func() bool { return w.Paused("contoso", offboard.Bulk) == want })
}

// waitWatcher waits until cond holds, looking again at each change of the
// watcher; the test fails if it does not hold within d. The signal is
// taken before the look, so a change between the two is not missed.
func waitWatcher(t *testing.T, w *control.Watcher, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		ch := w.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("not %s after %v", what, d)
		}
	}
}

// pauseBulk pauses the tenant's bulk priority as offboardctl does, with a
// store opened now (the bucket may have been made again).
func pauseBulk(t *testing.T, js jetstream.JetStream, tenant string) {
	t.Helper()
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: tenant, Action: control.ActionPause, Priority: "bulk", By: "alice"}); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherFollowsABucketMadeAgain: the control bucket deleted and made
// again while a watcher runs (the bucket's stream and the watch's
// consumer are gone, and nothing is sent to the watch): a pause written
// to the new bucket is in force within the contract's second, and one
// that was only in the old bucket is not.
func TestWatcherFollowsABucketMadeAgain(t *testing.T) {
	t.Parallel()
	js := setup(t)
	w := startWatcher(t, js, zap.NewNop())
	pauseBulk(t, js, "fabrikam")
	waitWatcher(t, w, 10*time.Second, "fabrikam bulk paused", func() bool { return w.Paused("fabrikam", offboard.Bulk) })
	if err := js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	pauseBulk(t, js, "contoso")
	// A second for the contract, a second for the check's pace.
	waitPaused(t, w, true, 2500*time.Millisecond)
	if w.Paused("fabrikam", offboard.Bulk) {
		t.Error("fabrikam still paused: its pause went with the old bucket")
	}
}

// TestWatcherForgetsControlsPurged: the bucket's stream purged while a
// watcher runs (no delete marker reaches it): the pause it held is no
// longer in force, as it is not for a replica started now.
func TestWatcherForgetsControlsPurged(t *testing.T) {
	t.Parallel()
	js := setup(t)
	w := startWatcher(t, js, zap.NewNop())
	pauseBulk(t, js, "contoso")
	waitPaused(t, w, true, time.Second)
	s, err := js.Stream(t.Context(), "KV_"+offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, w, false, 2500*time.Millisecond)
}

// TestWatcherReadsOnlyControls: a campaign's mark in the same bucket is
// not a control: no warning about it.
func TestWatcherReadsOnlyControls(t *testing.T) {
	t.Parallel()
	js := setup(t)
	core, logs := observer.New(zap.InfoLevel)
	w := startWatcher(t, js, zap.New(core))
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "campaign.contoso.wave1", []byte(`{"cancelled":true}`)); err != nil {
		t.Fatal(err)
	}
	pauseBulk(t, js, "contoso")
	waitPaused(t, w, true, time.Second) // the pause came after the mark
	if n := logs.FilterMessage("control entry ignored").Len(); n != 0 {
		t.Errorf("%d warnings of an ignored entry, want none for a campaign's mark", n)
	}
}

// TestPauseAndResumeAtOnce: an operator's pause of both priorities and
// another's resume, made at the same moment from two connections, leave
// one of them in force: both priorities paused or both resumed. Written
// key by key without a check, they left normal paused and bulk resumed
// (or the other way round) in about a third of the rounds: neither
// operator's command, though both said they were done.
func TestPauseAndResumeAtOnce(t *testing.T) {
	t.Parallel()
	js, js2 := twoConnections(t)
	alice, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := control.Open(t.Context(), js2, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 100 {
		errs := make(chan error, 2)
		for _, op := range []struct {
			store  *control.Store
			action string
		}{{alice, control.ActionPause}, {bob, control.ActionResume}} {
			go func() {
				_, err := op.store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: op.action, Priority: control.PriorityAll, By: op.action})
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		v, err := alice.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n, b := v.Paused("contoso", offboard.Normal), v.Paused("contoso", offboard.Bulk); n != b {
			t.Fatalf("round %d: normal paused %v, bulk paused %v: a mix of the pause and the resume", round, n, b)
		}
	}
}

// TestUnreadablePauseEntryPauses: a pause key written by hand with a
// value the worker cannot read ("paused": "true", a bad time) is taken as
// paused, with a warning, by a watcher started after it and by one
// running: someone meant to change the pause, and the worker does not go
// on calling as if nothing was written. A resume written anew lifts it.
func TestUnreadablePauseEntryPauses(t *testing.T) {
	t.Parallel()
	js := setup(t)
	kv, key := pauseWrittenByHand(t, js, `{"paused":"true","by":"cron"}`)
	core, logs := observer.New(zap.InfoLevel)
	w := startWatcher(t, js, zap.New(core))
	waitPaused(t, w, true, time.Second)
	if n := logs.FilterMessage("control entry unreadable").Len(); n != 1 {
		t.Errorf("%d warnings of an unreadable entry, want 1", n)
	}
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionResume, Priority: "bulk", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, w, false, time.Second)
	if _, err := kv.Put(t.Context(), key, []byte(`{"paused":true,"at":"now"}`)); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, w, true, time.Second)
	// JSON that is no entry at all (null, a list, a string) is unreadable too.
	pausedByEach(t, kv, store, w, `null`, ` null `, `[]`, `"resumed"`, `false`)
}

// pausedByEach resumes contoso's bulk priority and writes each value by
// hand in its pause key in turn: each holds it paused, and what
// offboardctl status reads says why.
func pausedByEach(t *testing.T, kv jetstream.KeyValue, store *control.Store, w *control.Watcher, values ...string) {
	t.Helper()
	key := control.PauseKey("contoso", offboard.Bulk)
	for _, v := range values {
		if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionResume, Priority: "bulk", By: "alice"}); err != nil {
			t.Fatal(err)
		}
		waitPaused(t, w, false, time.Second)
		if _, err := kv.Put(t.Context(), key, []byte(v)); err != nil {
			t.Fatal(err)
		}
		waitPaused(t, w, true, time.Second)
	}
	view, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := view.Pause("contoso", offboard.Bulk); !e.Paused || !strings.Contains(e.Reason, "could not be read") {
		t.Errorf("status: %+v", e)
	}
}

// TestPauseWhileAnotherKeepsWriting: a pause of both priorities while
// another writer keeps changing the bulk key is not given up half
// written. It failed (exit 1, no audit event) once its compare-and-swap
// lost five times, with the normal priority's pause already in force.
func TestPauseWhileAnotherKeepsWriting(t *testing.T) {
	t.Parallel()
	js, js2 := twoConnections(t)
	alice, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js2.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = kv.Put(ctx, control.PauseKey("contoso", offboard.Bulk), []byte(`{"paused":false,"by":"bob"}`))
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	for round := range 50 {
		if _, err := alice.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionResume, Priority: string(offboard.Normal), By: "alice"}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: control.PriorityAll, By: "alice"}); err != nil {
			v, lerr := alice.Load(t.Context())
			if lerr != nil {
				t.Fatal(lerr)
			}
			t.Fatalf("round %d: pause of both priorities failed (%v) with normal paused %v", round, err, v.Paused("contoso", offboard.Normal))
		}
	}
}

// twoConnections sets up contoso's streams and buckets on a NATS server
// and connects to it twice, as two operators' offboardctl would.
func twoConnections(t *testing.T) (jetstream.JetStream, jetstream.JetStream) {
	t.Helper()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	_, js2 := c.Connect(t)
	return js, js2
}

// TestUnreadableBudgetEntryIsNotLogged: a budget entry written by hand
// whose value does not read as a budget (a secret pasted there) is not
// quoted in the watcher's log, read at start or changed live; a budget
// that reads as one is.
func TestUnreadableBudgetEntryIsNotLogged(t *testing.T) {
	t.Parallel()
	js := setup(t)
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "Abc8Q~S3cret.value"
	if _, err := kv.Put(t.Context(), control.BudgetKey("contoso"), []byte(`{"value":"`+secret+`","by":"cron"}`)); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	w := startWatcher(t, js, zap.New(core))
	ch := w.Changed()
	if _, err := kv.Put(t.Context(), control.BudgetKey("contoso"), []byte(`{"value":"`+secret+`/1h","by":"cron"}`)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, ch, 10*time.Second, "the change signal of "+"the budget with the secret")
	ch = w.Changed()
	if _, err := kv.Put(t.Context(), control.BudgetKey("contoso"), []byte(`{"value":"50/24h","by":"cron"}`)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, ch, 10*time.Second, "the change signal of "+"the budget of 50/24h")
	// The change is told before it is logged: wait for its line.
	for deadline := time.Now().Add(10 * time.Second); logs.FilterField(zap.String("budget", "50/24h")).Len() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, " ", e.ContextMap()); strings.Contains(line, "S3cret") {
			t.Errorf("log line quotes the entry's value: %s", line)
		}
	}
	if n := logs.FilterField(zap.String("budget", "50/24h")).Len(); n != 1 {
		t.Errorf("%d log lines name the budget 50/24h, want 1: %v", n, logs.All())
	}
}

// TestUnreadableBudgetEntryReadAlikeEverywhere: a budget entry written by
// hand that is not JSON, over an override, is read as an override the
// worker ignores (the tenants file's budget applies) by a watcher running
// when it is written as by one started after it. The running one kept
// the override before it in force, while a replica restarted went back
// to the file's budget.
func TestUnreadableBudgetEntryReadAlikeEverywhere(t *testing.T) {
	t.Parallel()
	js := setup(t)
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), control.BudgetKey("contoso"), []byte(`{"value":"5/1h","by":"alice"}`)); err != nil {
		t.Fatal(err)
	}
	running := startWatcher(t, js, zap.NewNop())
	if b, ok := running.Budget("contoso"); !ok || b != "5/1h" {
		t.Fatalf("budget %q %t before the entry was overwritten", b, ok)
	}
	ch := running.Changed()
	if _, err := kv.Put(t.Context(), control.BudgetKey("contoso"), []byte(`5/1h then junk`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second): // told below
	}
	started := startWatcher(t, js, zap.NewNop())
	b1, ok1 := running.Budget("contoso")
	b2, ok2 := started.Budget("contoso")
	if b1 != b2 || ok1 != ok2 || b1 == "5/1h" {
		t.Errorf("running watcher reads the budget as %q (%t), one started after as %q (%t)", b1, ok1, b2, ok2)
	}
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := v.Budget("contoso"); ok != ok1 || e.Value != b1 {
		t.Errorf("status reads %+v (%t)", e, ok)
	}
}

// TestWatcherFollowsAfterNATSRestart: the lone NATS server restarted
// while a watcher runs (its watch's consumer, kept in memory, is gone,
// and the connection comes back without it): a pause written once the
// server is back is in force within the contract's second (and a second
// of the check's pace). The watch stayed silent until the client library
// missed two of its heartbeats, about ten seconds, while the worker went
// on calling.
func TestWatcherFollowsAfterNATSRestart(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	w := startWatcher(t, js, zap.NewNop())
	c.Shutdown(0)
	c.Restart(0)
	_, js2 := c.Connect(t)
	pauseBulk(t, js2, "contoso")
	waitPaused(t, w, true, 2500*time.Millisecond)
}

// TestPauseEntryWithAMemberOfNoEntryPauses: a pause key written by hand
// as JSON whose members are not an entry's ("pause" for "paused", a
// misspelling) is taken as paused, by a watcher started after it and by
// one running: its writer meant a pause, and the worker does not go on
// calling. It read as an entry with nothing set, that is resumed.
func TestPauseEntryWithAMemberOfNoEntryPauses(t *testing.T) {
	t.Parallel()
	js := setup(t)
	kv, key := pauseWrittenByHand(t, js, `{"pause":true,"by":"cron"}`)
	w := startWatcher(t, js, zap.NewNop())
	waitPaused(t, w, true, time.Second)
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	pausedByEach(t, kv, store, w, `{"pasued":true}`, `{"paused":true,"until":"tomorrow"}`, `{"Paused":false,"PAUSE":true}`)
	// Members an entry has, in any case, still read as written.
	if _, err := kv.Put(t.Context(), key, []byte(`{"Paused":false,"BY":"bob","at":"2026-01-02T03:04:05Z"}`)); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, w, false, time.Second)
}

// pauseWrittenByHand puts value in contoso's bulk pause key, as someone
// with the nats CLI would, and returns the bucket and the key.
func pauseWrittenByHand(t *testing.T, js jetstream.JetStream, value string) (jetstream.KeyValue, string) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	key := control.PauseKey("contoso", offboard.Bulk)
	if _, err := kv.Put(t.Context(), key, []byte(value)); err != nil {
		t.Fatal(err)
	}
	return kv, key
}

// TestControlLostWithTheBucketIsAnError: a pause or a budget override in
// force whose entry goes with the bucket (deleted and made again, or its
// stream purged) is no longer in force, as for a replica started now, and
// the watcher says so as an error naming the control, who set it and
// why: the worker goes on calling for a tenant an operator paused. A
// pause resumed before is not reported. It went without a word.
func TestControlLostWithTheBucketIsAnError(t *testing.T) {
	t.Parallel()
	js := setup(t)
	core, logs := observer.New(zap.InfoLevel)
	w := startWatcher(t, js, zap.New(core))
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []control.Change{
		{Tenant: "fabrikam", Action: control.ActionPause, Priority: "bulk", By: "alice", Reason: "CAB-7"},
		{Tenant: "contoso", Action: control.ActionPause, Priority: "bulk", By: "bob"},
		{Tenant: "contoso", Action: control.ActionResume, Priority: "bulk", By: "bob"},
	} {
		if _, err := store.Apply(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	// Every change applied, contoso's resume the last: a bucket deleted
	// before the watcher read the resume takes contoso's pause with it too.
	contosoChanges := func() int {
		return logs.FilterMessage("control changed").FilterField(zap.String("tenant", "contoso")).Len()
	}
	for deadline := time.Now().Add(10 * time.Second); contosoChanges() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of contoso's 2 changes applied after 10s", contosoChanges())
		}
	}
	waitWatcher(t, w, 10*time.Second, "fabrikam bulk paused", func() bool { return w.Paused("fabrikam", offboard.Bulk) })
	if err := js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	lost := waitLost(t, logs, 1)
	if f := lost[0].ContextMap(); f["tenant"] != "fabrikam" || f["control"] != "pause" || f["priority"] != "bulk" || f["by"] != "alice" || f["reason"] != "CAB-7" {
		t.Errorf("lost control logged as %v, want fabrikam's bulk pause by alice for CAB-7", f)
	}
	if w.Paused("fabrikam", offboard.Bulk) {
		t.Error("fabrikam still paused: its pause went with the old bucket")
	}

	store, err = control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "5/24h", By: "carol"}); err != nil {
		t.Fatal(err)
	}
	waitWatcher(t, w, 10*time.Second, "a budget of contoso", func() bool { _, ok := w.Budget("contoso"); return ok })
	s, err := js.Stream(t.Context(), "KV_"+offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	lost = waitLost(t, logs, 2)
	if f := lost[1].ContextMap(); f["tenant"] != "contoso" || f["control"] != "budget" || f["budget"] != "5/24h" || f["by"] != "carol" {
		t.Errorf("lost control logged as %v, want contoso's budget 5/24h by carol", f)
	}
}

// waitLost waits, at most 3 s, until n controls lost are logged as
// errors, and returns them; more than n fails the test.
func waitLost(t *testing.T, logs *observer.ObservedLogs, n int) []observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		lost := logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("control lost").All()
		if len(lost) > n {
			t.Fatalf("%d controls logged lost, want %d: %v", len(lost), n, lost)
		}
		if len(lost) == n {
			return lost
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d controls logged lost after 3s, want %d", len(lost), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventsAfterTheBucketIsMadeAgain: a change written to a control
// bucket made again (deleted, or lost with its server's storage) has the
// revisions of the old one's first changes; its audit event is stored all
// the same. The stream took it for a repeat of the old bucket's event of
// that revision and dropped it without an error: the audit trail lost the
// pause that an operator set again from it.
func TestEventsAfterTheBucketIsMadeAgain(t *testing.T) {
	t.Parallel()
	js := setup(t)
	pauseBulk(t, js, "contoso")
	if err := js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: "bulk", By: "bob", Reason: "set again"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Revision != 1 {
		t.Fatalf("revision %d in the bucket made again, want 1 as in the first", ev.Revision)
	}
	st, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(offboard.Subjects{}.Control("contoso")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[offboard.Subjects{}.Control("contoso")]; n != 2 {
		t.Errorf("%d control events of contoso stored, want 2: alice's pause and bob's", n)
	}
	if last := lastEvent(t, js, "contoso"); last == nil || last.By != "bob" {
		t.Errorf("last control event %+v, want bob's pause", last)
	}
}
