package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// runPresence starts a replica's presence over the bucket (made first),
// waits until it is current, and stops it when the test ends.
func runPresence(t *testing.T, js jetstream.JetStream, id string, tenants []string, beat time.Duration, log *zap.Logger) *Presence {
	t.Helper()
	return runPresenceWith(t, js, PresenceOptions{ID: id, Tenants: tenants, Beat: beat, Logger: log})
}

// runPresenceWith is runPresence with every option (the bucket's
// definition filled in, and a real clock unless o has one).
func runPresenceWith(t *testing.T, js jetstream.JetStream, o PresenceOptions) *Presence {
	t.Helper()
	id := o.ID
	o.Bucket = Settings{}.Presence()
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), o.Bucket); err != nil {
		t.Fatal(err)
	}
	p, err := NewPresence(t.Context(), js, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("presence %s: %v", id, err)
		}
	})
	select {
	case <-p.Current():
	case err := <-done:
		done <- nil // for the cleanup, which would wait for it for ever
		t.Fatalf("presence %s ended: %v", id, err)
	case <-time.After(presenceStart):
		t.Fatalf("presence %s not current after %v", id, presenceStart)
	}
	return p
}

// presenceStart bounds the wait for a presence to know every announcement
// stored: as a server's start, it has taken more than 10 s on a machine
// busy with other packages' tests under -race.
const presenceStart = 30 * time.Second

// waitFor polls cond every 20 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not so after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// announceAs announces replica id every beat, as a live replica does:
// first a, then each announcement sent on the returned channel, until the
// test ends.
func announceAs(t *testing.T, js jetstream.JetStream, id string, beat time.Duration, a announcement) chan<- announcement {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	next, stop := make(chan announcement), make(chan struct{})
	var announcing sync.WaitGroup
	announcing.Go(func() {
		for {
			data, _ := json.Marshal(a)
			_, _ = kv.Put(context.Background(), id, data) // a lost beat is a late one
			select {
			case <-stop:
				return
			case a = <-next:
			case <-time.After(beat):
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		announcing.Wait()
	})
	return next
}

// TestPresenceAfterItsBucketIsDeleted: the presence bucket deleted under
// running replicas (an operator, a restore) is made again, and each
// replica watches it again. Meanwhile no replica takes another's tenant
// for unserved: its view is not Known, and Serves says yes. Before, the
// watch ended for good: the view froze, or emptied, and a replica
// answered requests of another's tenants unknown_tenant.
func TestPresenceAfterItsBucketIsDeleted(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 200 * time.Millisecond
	a := runPresence(t, js, "a", []string{"contoso", "fabrikam"}, beat, zap.NewNop())
	b := runPresence(t, js, "b", []string{"contoso"}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "b knows a serves fabrikam", func() bool { return b.Known() && b.Serves("fabrikam") })
	if b.Serves("northwind") {
		t.Fatal("b says a tenant nobody configures is served")
	}
	if err := js.DeleteKeyValue(t.Context(), BucketPresence); err != nil {
		t.Fatal(err)
	}
	// From now until both watch again, b must never say fabrikam is not
	// served.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !b.Serves("fabrikam") {
			t.Fatal("b says nobody serves fabrikam while a does")
		}
		_, err := js.KeyValue(t.Context(), BucketPresence)
		if err == nil && a.Known() && b.Known() && !b.Serves("northwind") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: bucket %v, a known %v, b known %v", err, a.Known(), b.Known())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// b watches the new bucket: a replica that joins is seen.
	runPresence(t, js, "c", []string{"northwind"}, beat, zap.NewNop())
	waitFor(t, 10*time.Second, "b sees c join", func() bool { return b.Serves("northwind") })
}

// TestPresenceSeesATenantsFileChange: a replica back under the same id
// with other tenants (a crash, then a new tenants file) moves the
// assignment: the other replica is told, and takes the tenant the first
// no longer serves. Before, only a change of the live replicas' ids was
// told, and the tenant was left to nobody.
func TestPresenceSeesATenantsFileChange(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 200 * time.Millisecond
	// A tenant that b, serving it, takes from a.
	tenant := rankedFirst(t, "b", "a")
	a := runPresence(t, js, "a", []string{tenant}, beat, zap.NewNop())
	kv, err := js.KeyValue(t.Context(), BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	// b announces itself every beat, as a live replica does.
	stop := make(chan struct{})
	tenants := make(chan []string, 1)
	tenants <- []string{tenant, "other"}
	var announcing sync.WaitGroup
	announcing.Go(func() {
		current := <-tenants
		for {
			data, _ := json.Marshal(announcement{Tenants: current, Instance: "b-process"})
			_, _ = kv.Put(context.Background(), "b", data) // a lost beat is a late one
			select {
			case <-stop:
				return
			case current = <-tenants:
			case <-time.After(beat):
			}
		}
	})
	defer announcing.Wait()
	defer close(stop)
	waitFor(t, 5*time.Second, "b takes the tenant", func() bool { return !a.Assigned(tenant) })
	changed := a.Changed()
	tenants <- []string{"other"}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("a was not told that b's tenants changed")
	}
	if !a.Assigned(tenant) {
		t.Fatal("a does not take the tenant b no longer serves")
	}
}

// TestPresenceReportsASharedReplicaID: two processes started with the
// same replica id each see the other's announcements under their own id,
// and say so (before, both silently worked every tenant).
func TestPresenceReportsASharedReplicaID(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	core, logs := observer.New(zap.ErrorLevel)
	runPresence(t, js, "pod-0", []string{"contoso"}, 200*time.Millisecond, zap.New(core))
	runPresence(t, js, "pod-0", []string{"contoso"}, 200*time.Millisecond, zap.NewNop())
	waitFor(t, 5*time.Second, "the shared id reported", func() bool {
		return logs.FilterMessageSnippet("another worker announces itself under this replica's id").Len() > 0
	})
}

// afterADeadReplica makes a presence bucket holding the entry of a replica
// "dead" that serves northwind and died without withdrawing, and the
// presence (not yet run) of replica "a", serving contoso, over it.
func afterADeadReplica(t *testing.T, beat time.Duration, log *zap.Logger) (*Presence, jetstream.KeyValue) {
	t.Helper()
	_, js := connect(t)
	cfg := Settings{}.Presence()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := json.Marshal(announcement{Tenants: []string{"northwind"}, Instance: "dead"})
	if _, err := kv.Put(t.Context(), "dead", dead); err != nil {
		t.Fatal(err)
	}
	p, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return p, kv
}

// failingPuts is a presence bucket whose writes fail while fail is set
// (account storage full, a permission withdrawn), its reads going on.
type failingPuts struct {
	jetstream.KeyValue
	fail atomic.Bool
}

func (f *failingPuts) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if f.fail.Load() {
		return 0, errors.New("insufficient resources")
	}
	return f.KeyValue.Put(ctx, key, value)
}

// rankedFirst is a tenant that replica first ranks above replica other.
func rankedFirst(t *testing.T, first, other string) string {
	t.Helper()
	for i := range 100 {
		if name := fmt.Sprintf("t%02d", i); rank(first, name) > rank(other, name) {
			return name
		}
	}
	t.Fatalf("no tenant of 100 that %s ranks above %s", first, other)
	return ""
}

// runCurrent runs p until the test ends, and waits until its view is
// current.
func runCurrent(t *testing.T, p *Presence) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.For(t, p.Current(), presenceStart, "the presence knows every announcement stored")
}

// runFailingPuts runs p with announcements that fail once the returned
// failingPuts is told to.
func runFailingPuts(t *testing.T, p *Presence) *failingPuts {
	t.Helper()
	f := &failingPuts{KeyValue: p.kv}
	p.kv = f
	runCurrent(t, p)
	return f
}

// TestPresenceNotKnownWhileItCannotAnnounce: a replica whose
// announcements fail while its watch works does not see itself come back
// and so does not know its view is current; a new watch, which reads its
// last stored announcement again, does not change that, nor does it bring
// back to life a replica that died without withdrawing. Before, every new
// watch made the view Known for two beats, and the dead replica live.
func TestPresenceNotKnownWhileItCannotAnnounce(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	core, logs := observer.New(zap.InfoLevel)
	p, _ := afterADeadReplica(t, beat, zap.New(core))
	f := runFailingPuts(t, p)
	f.fail.Store(true)
	time.Sleep(5 * beat)
	for end := time.Now().Add(50 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		if p.Known() {
			t.Fatalf("Known %v after its last announcement was stored", 5*beat)
		}
	}
	// Announcing again, it knows its view again; the dead replica's
	// entry, read at the start, has long expired.
	behind := func() int { return logs.FilterMessageSnippet("the view of the other replicas is behind").Len() }
	f.fail.Store(false)
	waitFor(t, 5*time.Second, "known again", p.Known)
	// The dead replica counts one ttl after the view is current again,
	// then no more. A machine that stalls past two beats puts the view
	// behind once more, and the dead replica then counts one more ttl
	// after it is current again: that is as designed, and logged.
	waitFor(t, 30*beat, "the dead replica gone", func() bool { return !p.Serves("northwind") })
	// Another stall makes the view current again later, and the dead
	// replica counts one ttl from then: measure from the last time the
	// view became current (the view cannot tell the dead from the late
	// within a ttl of it), and only while it is current.
	sinceCurrent := func() (time.Duration, bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		now := p.clock.Now()
		return now.Sub(p.regained), p.knownLocked(now)
	}
	for end := time.Now().Add(10 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		serves := p.Serves("northwind")
		if since, known := sinceCurrent(); serves && known && since > p.ttl+beat {
			t.Fatalf("a replica dead since before the start counts as live again, %v after the view was last current again", since)
		}
	}
	stalls := behind()
	// The operator is told both ways, once each time.
	if stalls < 1 {
		t.Errorf("%d warnings that the view is behind, want at least 1", stalls)
	}
	waitFor(t, 5*time.Second, "current again logged", func() bool {
		return logs.FilterMessage("the view of the other replicas is current again").Len() == behind()
	})
}

// TestPresenceAfterANATSOutage: after NATS is away for longer than an
// announcement counts, a replica whose view is current again does not
// take the other, alive, for gone before it has had a beat to announce
// itself: time spent behind does not age the others' entries. (The entry
// read again by the new watch is no sign of life, so without this the
// other looked dead until its next beat came.)
func TestPresenceAfterANATSOutage(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	_, js2 := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	const beat = 300 * time.Millisecond
	p := runPresence(t, js, "p", []string{"contoso"}, beat, zap.NewNop())
	runPresence(t, js2, "x", []string{"northwind"}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "p sees x", func() bool { return p.Known() && p.Serves("northwind") })
	c.Shutdown(0)
	time.Sleep(6 * beat)
	c.Restart(0)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if p.Known() && !p.Serves("northwind") {
			t.Fatal("p's view is current and says nobody serves x's tenant, x alive")
		}
	}
	if !p.Known() || !p.Serves("northwind") {
		t.Fatalf("10s after NATS came back: known %v, x serves %v", p.Known(), p.Serves("northwind"))
	}
}

// TestPresenceSeesANewReplicaSoonAfterNATSRestarts: a lone server
// restarted comes back without the presence watch's consumer, which it
// kept in memory, and the client library makes it again only once it has
// missed two of its heartbeats (about ten seconds). A replica started
// meanwhile was seen only then, or after three beats without this
// replica's own announcements; the watch is now made again at the first
// beat after the connection came back.
func TestPresenceSeesANewReplicaSoonAfterNATSRestarts(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	const beat = 2 * time.Second
	p := runPresence(t, js, "p", []string{"contoso"}, beat, zap.NewNop())
	c.Shutdown(0)
	c.Restart(0)
	waitFor(t, 10*time.Second, "p reconnected", func() bool { return js.Conn().IsConnected() })
	_, js2 := c.Connect(t)
	runPresence(t, js2, "y", []string{"northwind"}, beat, zap.NewNop())
	waitFor(t, beat+beat/2, "p sees the replica started after the restart", func() bool { return p.Serves("northwind") })
}

// TestPresenceReplayedEntryIsNoSignOfLife: a watch made again while the
// view is current (the old one ended) reads every entry again. The entry
// of a replica that died without withdrawing, read again under the same
// revision, must not make it live; a new revision of it does.
func TestPresenceReplayedEntryIsNoSignOfLife(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	p, kv := afterADeadReplica(t, beat, zap.NewNop())
	runCurrent(t, p)
	waitFor(t, 5*time.Second, "the dead replica gone", func() bool { return p.Known() && !p.Serves("northwind") })

	entry, err := kv.Get(t.Context(), "dead")
	if err != nil {
		t.Fatal(err)
	}
	p.apply(entry) // as a new watch brings it
	if p.Known() && p.Serves("northwind") {
		t.Fatal("the dead replica's entry, read again, made it live")
	}
	dead, _ := json.Marshal(announcement{Tenants: []string{"northwind"}, Instance: "dead"})
	if _, err := kv.Put(t.Context(), "dead", dead); err != nil { // it comes back
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the replica back", func() bool { return p.Serves("northwind") })
}

// TestPresenceHoldsATenantTwoFilesGiveDifferentApps: another replica
// whose tenants file gives one tenant name another Entra tenant or
// application stops this replica working it, though this one ranks first
// for it (requests of either would go to the other's tenant), and says so
// once; when the files agree, or the other announces no applications (a
// release before them), the tenant is worked again.
func TestPresenceHoldsATenantTwoFilesGiveDifferentApps(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 200 * time.Millisecond
	tenant := rankedFirst(t, "a", "b")
	mine := AppDigest("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222")
	core, logs := observer.New(zap.InfoLevel)
	a := runPresenceWith(t, js, PresenceOptions{ID: "a", Tenants: []string{tenant}, Apps: map[string]string{tenant: mine}, Beat: beat, Logger: zap.New(core)})
	b := announcement{Tenants: []string{tenant}, Instance: "b-process",
		Apps: map[string]string{tenant: AppDigest("33333333-3333-3333-3333-333333333333", "22222222-2222-2222-2222-222222222222")}}
	next := announceAs(t, js, "b", beat, b)
	msg := "another replica's tenants file gives this tenant another Entra tenant or application: neither replica works it until the files agree (its requests wait)"
	waitFor(t, 5*time.Second, "a sees b's other application", func() bool { return logs.FilterMessage(msg).Len() > 0 })
	if a.Assigned(tenant) {
		t.Error("a works a tenant b names another application for")
	}
	time.Sleep(3 * beat)
	if n := logs.FilterMessage(msg).Len(); n != 1 {
		t.Errorf("said %d times, want once", n)
	}
	b.Apps = map[string]string{tenant: mine}
	next <- b
	waitFor(t, 5*time.Second, "a works the tenant once the files agree", func() bool { return a.Assigned(tenant) })
	b.Apps = nil
	next <- b
	time.Sleep(3 * beat)
	if !a.Assigned(tenant) {
		t.Error("a does not work the tenant beside a replica that announces no applications")
	}
}

// TestPresenceHoldsAnAppAnotherReplicaNamesOtherwise: another replica
// whose tenants file gives this tenant's Entra tenant and application
// another name (a rename during a rolling update) would call the same
// application under a quota journal, budget and ledger of its own: two
// names, twice the API's quota. Neither works it while both announce it;
// once the other names another application, this one works it again.
func TestPresenceHoldsAnAppAnotherReplicaNamesOtherwise(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 200 * time.Millisecond
	mine := AppDigest("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222")
	core, logs := observer.New(zap.InfoLevel)
	a := runPresenceWith(t, js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Apps: map[string]string{"contoso": mine}, Beat: beat, Logger: zap.New(core)})
	b := announcement{Tenants: []string{"contoso-eu"}, Instance: "b-process", Apps: map[string]string{"contoso-eu": mine}}
	next := announceAs(t, js, "b", beat, b)
	waitFor(t, 5*time.Second, "a sees b", func() bool { return a.Known() && a.Serves("contoso-eu") })
	if a.Assigned("contoso") {
		t.Error("a works an application b works under another name")
	}
	msg := "another replica's tenants file gives this tenant's Entra tenant and application another name: neither replica works it until the files agree (its requests wait)"
	if n := logs.FilterMessage(msg).Len(); n != 1 {
		t.Errorf("said %d times, want once", n)
	}
	b.Apps = map[string]string{"contoso-eu": AppDigest("33333333-3333-3333-3333-333333333333", "22222222-2222-2222-2222-222222222222")}
	next <- b
	waitFor(t, 5*time.Second, "a works the tenant once b names another application", func() bool { return a.Assigned("contoso") })
}

// TestPresenceThatCannotAnnounceLetsGo: a replica whose announcements
// fail while its watch works (a permission withdrawn, the account's
// storage full) is taken for gone by the others once its last one
// expires, and they take its tenants. It lets go of each tenant another
// live replica serves by then, and takes it back once it announces again.
// Before, its view not being current, it kept every tenant it had, and
// both replicas worked them for as long as its announcements failed.
func TestPresenceThatCannotAnnounceLetsGo(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	tenant := rankedFirst(t, "a", "b")
	_, js := connect(t)
	cfg := Settings{}.Presence()
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{tenant, "alone"}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	f := runFailingPuts(t, a)
	b := runPresence(t, js, "b", []string{tenant}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "a works the tenant, b not", func() bool { return a.Assigned(tenant) && !b.Assigned(tenant) })

	f.fail.Store(true)
	waitFor(t, 5*time.Second, "b takes a for gone", func() bool { return b.Assigned(tenant) })
	// Told through Changed, as the worker's gates are.
	for end := time.Now().Add(2 * beat); a.Assigned(tenant); {
		changed := a.Changed()
		if !a.Assigned(tenant) {
			break
		}
		select {
		case <-changed:
		case <-time.After(time.Until(end)):
			t.Fatalf("a still works the tenant %v after b took it", 2*beat)
		}
	}
	if !a.Assigned("alone") {
		t.Error("a lets go of a tenant no other replica serves")
	}

	f.fail.Store(false)
	waitFor(t, 5*time.Second, "a works the tenant again, b not", func() bool { return a.Assigned(tenant) && !b.Assigned(tenant) })
}

// TestPresenceSharedReplicaIDWorksEachTenantOnce: two processes started
// with the same replica id (a copy-pasted manifest) rank alike for every
// tenant. One of them works the tenants both serve, the other none of
// them; when the one working them stops, the other takes them at once.
// Before, both worked every tenant for as long as both ran.
func TestPresenceSharedReplicaIDWorksEachTenantOnce(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	// Each sees the other alive while its announcements come within three
	// beats: a beat long enough for a busy machine to keep to.
	const beat = 250 * time.Millisecond
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	start := func(tenants ...string) (*Presence, context.CancelFunc) {
		p, err := NewPresence(t.Context(), js, PresenceOptions{ID: "pod-0", Tenants: tenants, Beat: beat, Bucket: Settings{}.Presence(), Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		stop := sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop)
		testwait.For(t, p.Current(), presenceStart, "the presence knows every announcement stored")
		return p, stop
	}
	p1, stop1 := start("contoso", "fabrikam")
	p2, stop2 := start("contoso")
	waitFor(t, 5*time.Second, "one of them works contoso", func() bool { return p1.Assigned("contoso") != p2.Assigned("contoso") })
	for end := time.Now().Add(5 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		if p1.Assigned("contoso") && p2.Assigned("contoso") {
			t.Fatal("both processes under one replica id work contoso")
		}
	}
	if !p1.Assigned("fabrikam") {
		t.Error("fabrikam, which only one of them serves, is not worked")
	}
	other, stop := p2, stop1
	if p2.Assigned("contoso") {
		other, stop = p1, stop2
	}
	stop()
	waitFor(t, 2*time.Second, "the other takes contoso once the one working it stopped", func() bool { return other.Assigned("contoso") })
}

// stuckWatch is a presence bucket whose watch is not made until its
// context ends (a SIGTERM while the worker starts).
type stuckWatch struct {
	jetstream.KeyValue
	called chan struct{}
}

func (s *stuckWatch) WatchAll(ctx context.Context, _ ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	close(s.called)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestPresenceStoppedWhileItStarts: a presence stopped before its watch
// is made (the worker stopped while it starts) is not a failure, and
// takes back the announcement it made. Before, Run returned the watch's
// context error, the stop failed (exit 1 after a SIGTERM), and the other
// replicas counted on this one for three beats.
func TestPresenceStoppedWhileItStarts(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	cfg := Settings{}.Presence()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	stuck := &stuckWatch{KeyValue: p.kv, called: make(chan struct{})}
	p.kv = stuck
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testwait.For(t, stuck.called, 10*time.Second, "announced, watch under way")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run stopped while it started: %v", err)
	}
	if e, err := kv.Get(t.Context(), "a"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("announcement left after the stop: %v %v", e, err)
	}

	// Stopped before its first announcement: nothing to say either.
	p2, err := NewPresence(t.Context(), js, PresenceOptions{ID: "b", Tenants: []string{"contoso"}, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Run(ctx); err != nil {
		t.Errorf("Run stopped before it began: %v", err)
	}
}

// bucketPresence makes the presence bucket and a presence (not yet run)
// of replica id over it, with beats beat apart.
func bucketPresence(t *testing.T, js jetstream.JetStream, id string, beat time.Duration) (*Presence, jetstream.KeyValue) {
	t.Helper()
	cfg := Settings{}.Presence()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPresence(t.Context(), js, PresenceOptions{ID: id, Tenants: []string{"contoso"}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return p, kv
}

// startedPresence is bucketPresence's process, running (runStoppable)
// with every announcement that existed when it started read.
func startedPresence(t *testing.T, js jetstream.JetStream, id string) (*Presence, jetstream.KeyValue, func() error) {
	t.Helper()
	p, kv := bucketPresence(t, js, id, time.Hour)
	stop := runStoppable(p)
	testwait.For(t, p.Current(), presenceStart, "the presence knows every announcement stored")
	return p, kv, stop
}

// runStoppable runs p until the returned stop is called; stop returns
// what Run did.
func runStoppable(p *Presence) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() error { cancel(); return <-done }
}

// announcedBy is the instance whose announcement the bucket holds under
// id; "" when none is stored.
func announcedBy(t *testing.T, kv jetstream.KeyValue, id string) string {
	t.Helper()
	e, err := kv.Get(t.Context(), id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var a announcement
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		t.Fatal(err)
	}
	return a.Instance
}

// TestPresenceWithdrawsOnlyItsOwnAnnouncement: a process that stops
// deletes its replica id's announcement only if it is still its own. A
// new process under the same id (a pod restarted under its name before
// the old one was done) announced since: its announcement stays. Before,
// the old process's stop deleted it, and the other replicas took the
// restarted one's tenants until its next beat.
func TestPresenceWithdrawsOnlyItsOwnAnnouncement(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	_, kv, stop := startedPresence(t, js, "pod-0")
	restarted := runPresence(t, js, "pod-0", []string{"contoso"}, time.Hour, zap.NewNop())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := announcedBy(t, kv, "pod-0"); got != restarted.instance {
		t.Errorf("announcement of instance %q after the old process stopped, want the restarted process's %q kept", got, restarted.instance)
	}
}

// TestPresenceWithdrawsItsAnnouncementStoredUnanswered: a process's
// announcement stored without the put's answer coming back (a beat's put
// cut off by the stop, or a beat's and Leave's at once, whose revisions
// came back in the other order) is still withdrawn at the stop. Before,
// the delete carried the revision of the last put answered, failed, and
// left the announcement to count for PresenceTTL: the other replicas
// kept the stopped one's tenants and waited for its calls.
func TestPresenceWithdrawsItsAnnouncementStoredUnanswered(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	p, kv, stop := startedPresence(t, js, "pod-0")
	// The process's next announcement, stored; its answer never came.
	data, err := json.Marshal(announcement{Tenants: p.tenants, Instance: p.instance, Leaving: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "pod-0", data); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := announcedBy(t, kv, "pod-0"); got != "" {
		t.Errorf("announcement of instance %q left after the stop; want it withdrawn", got)
	}
}

// gatedPuts is a presence bucket whose next put, once armed, waits at the
// gate: a beat's announcement slow to be stored.
type gatedPuts struct {
	jetstream.KeyValue
	armed         atomic.Bool
	entered, gate chan struct{}
	done          chan struct{} // closed once the gated put is stored
}

func (g *gatedPuts) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if !g.armed.CompareAndSwap(true, false) {
		return g.KeyValue.Put(ctx, key, value)
	}
	close(g.entered)
	<-g.gate
	defer close(g.done)
	return g.KeyValue.Put(ctx, key, value)
}

// TestPresenceLeaveIsNotUndoneByABeat: a beat's announcement, made before
// the replica began to stop and stored slowly, is not stored after the
// one that says it stops: announcements go one at a time. Before, the
// beat's came last, and the replica's tenants stayed with it until its
// announcement was withdrawn.
func TestPresenceLeaveIsNotUndoneByABeat(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	// Beats a second apart: the next comes long after the checks.
	p, kv := bucketPresence(t, js, "a", time.Second)
	g := &gatedPuts{KeyValue: p.kv, entered: make(chan struct{}), gate: make(chan struct{}), done: make(chan struct{})}
	p.kv = g
	runCurrent(t, p)
	g.armed.Store(true)
	select {
	case <-g.entered: // a beat's announcement, not leaving, waits
	case <-time.After(10 * time.Second):
		t.Fatal("no beat")
	}
	left := make(chan error, 1)
	go func() { left <- p.Leave(t.Context()) }()
	time.Sleep(200 * time.Millisecond) // Leave's announcement goes first, if it may
	close(g.gate)
	testwait.For(t, g.done, 10*time.Second, "the gated announcement to end")
	if err := testwait.For(t, left, 10*time.Second, "Leave to return"); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	var a announcement
	if err := json.Unmarshal(e.Value(), &a); err != nil || !a.Leaving {
		t.Errorf("announcement stored last says leaving %v, want true", a.Leaving)
	}
}

// stuckPuts is a presence bucket whose puts wait until their context
// ends: an announcement whose answer never comes.
type stuckPuts struct {
	jetstream.KeyValue
	called chan struct{}
	once   sync.Once
}

func (s *stuckPuts) Put(ctx context.Context, _ string, _ []byte) (uint64, error) {
	s.once.Do(func() { close(s.called) })
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestPresenceStoppedBeforeAnyAnswerKeepsAnothersAnnouncement: a process
// stopped before any of its announcements was answered (stopped while it
// starts, NATS slow) withdraws the announcement under its replica id only
// if it is its own: another process under that id (the one it replaces,
// still finishing its requests) keeps its announcement. Before, with no
// revision of its own to delete at, it deleted whatever was stored.
func TestPresenceStoppedBeforeAnyAnswerKeepsAnothersAnnouncement(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	p, kv := bucketPresence(t, js, "pod-0", time.Hour)
	old := runPresence(t, js, "pod-0", []string{"contoso"}, time.Hour, zap.NewNop())
	stuck := &stuckPuts{KeyValue: p.kv, called: make(chan struct{})}
	p.kv = stuck
	stop := runStoppable(p)
	testwait.For(t, stuck.called, 10*time.Second, "an announcement under way")
	if err := stop(); err != nil {
		t.Errorf("Run stopped while it started: %v", err)
	}
	if got := announcedBy(t, kv, "pod-0"); got != old.instance {
		t.Errorf("announcement of instance %q, want the other process's %q kept", got, old.instance)
	}
}

// TestPresenceCountsAnotherProcessUnderItsID: another process announcing
// itself under this replica's id (two replicas given one --replica-id) is
// alive and serves its tenants, as another replica would be: a request of
// a tenant only its file names is not answered unknown_tenant here, and a
// call it has under way is not taken for a dead process's. Before, its
// announcements counted for nothing but the error they logged: Serves
// said no to its tenants (the consumer of one, stale here, had its
// requests answered unknown_tenant while the other process worked them)
// and Running said no to its instance.
func TestPresenceCountsAnotherProcessUnderItsID(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 100 * time.Millisecond
	p := runPresence(t, js, "pod-0", []string{"contoso"}, beat, zap.NewNop())
	announceAs(t, js, "pod-0", beat, announcement{Tenants: []string{"contoso", "fabrikam"}, Instance: "other-process"})
	sawTwin := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.twinInst == "other-process" && p.clock.Since(p.twinSeen) < beat
	}
	waitFor(t, 5*time.Second, "the other process seen, the view current", func() bool { return sawTwin() && p.Known() })
	for end := time.Now().Add(5 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		if !p.Known() {
			continue
		}
		if !p.Serves("fabrikam") {
			t.Fatal("fabrikam, which the other process under this id serves, is taken for served by no replica")
		}
		if !p.Running("other-process") {
			t.Fatal("the other process under this id, announcing itself every beat, is taken for gone")
		}
	}
}

// TestPresenceForgetsReplicasWhoseEntriesExpired: a replica that died
// without withdrawing (killed, its node lost) leaves its last
// announcement until the bucket's TTL drops it, silently: no watch hears
// of it. The view drops it too then. Before, it kept every such replica
// for as long as it ran, each with its tenants (a pod name per rollout),
// and counted all of them alive again for three beats after each NATS
// outage, when its view was current again.
func TestPresenceForgetsReplicasWhoseEntriesExpired(t *testing.T) {
	t.Parallel()
	const beat, dead = 100 * time.Millisecond, 50
	_, js := connect(t)
	cfg := Settings{}.Presence()
	cfg.TTL = time.Second
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range dead {
		a, _ := json.Marshal(announcement{Tenants: []string{"northwind"}, Instance: fmt.Sprint("dead-", i)})
		if _, err := kv.Put(t.Context(), fmt.Sprint("dead-", i), a); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	runCurrent(t, p)
	held := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.others)
	}
	if n := held(); n != dead {
		t.Fatalf("%d replicas held at the start, want %d", n, dead)
	}
	waitFor(t, 5*time.Second, "the dead replicas' entries expired", func() bool {
		keys, err := kv.Keys(t.Context())
		return err == nil && slices.Equal(keys, []string{"a"})
	})
	deadline := time.Now().Add(cfg.TTL + 10*beat)
	for held() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := held(); n != 0 {
		t.Fatalf("%d replicas held %v after their entries expired, want none", n, cfg.TTL+10*beat)
	}
}

// TestPresenceWithdrawnTenantsCountForATTL: a replica that stops cleanly
// withdraws its announcement; its tenants still count as served for one
// PresenceTTL, though not the process as running. A replica restarted,
// the only one whose tenants file names a tenant (a rolling update), is
// back within that time: before, the others took the tenant for served
// by nobody the moment the withdrawal came, and answered its waiting
// requests unknown_tenant. Announced again without the tenant, it counts
// no more.
func TestPresenceWithdrawnTenantsCountForATTL(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 200 * time.Millisecond
	a := runPresence(t, js, "a", []string{"contoso"}, beat, zap.NewNop())
	b, err := NewPresence(t.Context(), js, PresenceOptions{ID: "b", Tenants: []string{"contoso", "fabrikam"}, Beat: beat, Bucket: Settings{}.Presence(), Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStoppable(b)
	holds := func(id string) bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.others[id]
		return ok
	}
	waitFor(t, 5*time.Second, "b's announcement read", func() bool { return holds("b") && a.Known() })
	withdrawn := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b's withdrawal read", func() bool { return !holds("b") })
	if !a.Serves("fabrikam") {
		t.Fatal("fabrikam taken for served by nobody as soon as b withdrew; want it counted for a TTL")
	}
	if a.Running(b.Instance()) {
		t.Error("b's process taken for running after it withdrew")
	}
	waitFor(t, 5*time.Second, "fabrikam served by nobody", func() bool { return a.Known() && !a.Serves("fabrikam") })
	if d := time.Since(withdrawn); d < 3*beat {
		t.Errorf("fabrikam served by nobody %v after b withdrew, want a TTL (%v) at least", d, 3*beat)
	}

	// Stopped again and back under its name without fabrikam: served by
	// nobody once its new announcement is read, before the TTL.
	b2, err := NewPresence(t.Context(), js, PresenceOptions{ID: "b", Tenants: []string{"contoso", "fabrikam"}, Beat: beat, Bucket: Settings{}.Presence(), Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	stop = runStoppable(b2)
	waitFor(t, 5*time.Second, "b back", func() bool { return a.Running(b2.Instance()) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b's second withdrawal read", func() bool { return !holds("b") })
	back := time.Now()
	announceAs(t, js, "b", beat, announcement{Tenants: []string{"contoso"}, Instance: "b-again"})
	waitFor(t, 5*time.Second, "fabrikam served by nobody", func() bool { return a.Known() && !a.Serves("fabrikam") })
	if d := time.Since(back); d >= 3*beat {
		t.Errorf("fabrikam served by nobody %v after b came back without it, want before the TTL (%v)", d, 3*beat)
	}
}

// TestPresenceStartedAfterAWithdrawalCountsItsTenants: a replica that
// starts after another withdrew (both pods restarted at once, the only
// one serving fabrikam slower to come back) reads only the withdrawal:
// the bucket keeps one revision a key. The withdrawal carries the
// announcement withdrawn, so fabrikam counts as served until one TTL
// after it. Before, the new replica took fabrikam for served by nobody
// as soon as its view was current, and answered its waiting requests
// unknown_tenant.
func TestPresenceStartedAfterAWithdrawalCountsItsTenants(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 2 * time.Second // a's start fits in the TTL on a loaded machine
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	b, err := NewPresence(t.Context(), js, PresenceOptions{ID: "b", Tenants: []string{"contoso", "fabrikam"}, Beat: beat, Bucket: Settings{}.Presence(), Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStoppable(b)
	testwait.For(t, b.Current(), presenceStart, "b knows every announcement stored")
	withdrawn := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	a := runPresence(t, js, "a", []string{"contoso"}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "a's view current", a.Known)
	if d := time.Since(withdrawn); d >= 3*beat {
		t.Fatalf("a current %v after b withdrew, past the TTL (%v): nothing left to see", d, 3*beat)
	}
	if !a.Serves("fabrikam") {
		t.Fatal("fabrikam taken for served by nobody by a replica started just after b withdrew; want it counted until a TTL after the withdrawal")
	}
	if a.Running(b.Instance()) {
		t.Error("b's process taken for running after it withdrew")
	}
	waitFor(t, 10*time.Second, "fabrikam served by nobody", func() bool { return a.Known() && !a.Serves("fabrikam") })
	if d := time.Since(withdrawn); d < 3*beat {
		t.Errorf("fabrikam served by nobody %v after b withdrew, want a TTL (%v) at least", d, 3*beat)
	}
}
