package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// twinAndAnother starts two processes under pod-0 (started so by mistake)
// and pod-1, each serving one tenant, which pod-0 ranks above pod-1 for:
// the first of pod-0 aside while aside1 holds, the second serving it
// unless only1. It returns the tenant, the two processes of pod-0 and
// pod-1 once the two have taken turns.
func twinAndAnother(t *testing.T, js jetstream.JetStream, aside1 *atomic.Bool, only1 bool) (tenant string, p1, p2, other *Presence) {
	t.Helper()
	for i := 0; ; i++ {
		tenant = fmt.Sprintf("t%d", i)
		if rank("pod-0", tenant) > rank("pod-1", tenant) {
			break
		}
	}
	var never atomic.Bool
	p1 = startAsidePresence(t, js, "pod-0", aside1, tenant)
	second := tenant
	if only1 {
		second = "northwind"
	}
	p2 = startAsidePresence(t, js, "pod-0", &never, second)
	other = startAsidePresence(t, js, "pod-1", &never, tenant)
	waitFor(t, 5*time.Second, "pod-1 counts both processes under pod-0 alive", func() bool {
		return other.Known() && other.Running(p1.Instance()) && other.Running(p2.Instance())
	})
	return tenant, p1, p2, other
}

// timesAssigned samples, every tenth of a beat for 12 beats of 250 ms,
// whether p works the tenant, and says how often it did.
func timesAssigned(p *Presence, tenant string) (n, of int) {
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		of++
		if p.Assigned(tenant) {
			n++
		}
	}
	return n, of
}

// TestPresenceTwinAsideKeepsItsTenantsFromAnother: of two processes
// under pod-0, one aside (its clock off), the other works the tenant both
// serve, and pod-1, which ranks below pod-0 for it, does not: the
// announcements under pod-0 take turns, one aside and one not, and a
// process under pod-0 that can make calls still serves the tenant. Before,
// pod-1 took the tenant at each beat of the one aside and gave it back at
// the other's, so two replicas worked it about half the time.
func TestPresenceTwinAsideKeepsItsTenantsFromAnother(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	var aside1 atomic.Bool
	aside1.Store(true)
	tenant, p1, p2, other := twinAndAnother(t, js, &aside1, false)
	waitFor(t, 5*time.Second, "the process of pod-0 that can call works the tenant", func() bool {
		return p2.Assigned(tenant) && !p1.Assigned(tenant)
	})
	if n, of := timesAssigned(other, tenant); n > 0 {
		t.Errorf("pod-1 worked %s at %d of %d looks while pod-0's process that can call did", tenant, n, of)
	}
}

// TestPresenceTwinLeavingKeepsItsTenantsFromAnother: of two processes
// under pod-0, one stops (it finishes its requests, announcing that it
// leaves, while the other lives): the other works the tenant both serve,
// and pod-1, which ranks below pod-0 for it, does not. Before, pod-1 took
// the tenant at each beat of the one stopping and gave it back at the
// other's.
func TestPresenceTwinLeavingKeepsItsTenantsFromAnother(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	var aside1 atomic.Bool
	tenant, p1, p2, other := twinAndAnother(t, js, &aside1, false)
	if err := p1.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the process of pod-0 not stopping works the tenant", func() bool {
		return p2.Assigned(tenant) && !p1.Assigned(tenant)
	})
	if n, of := timesAssigned(other, tenant); n > 0 {
		t.Errorf("pod-1 worked %s at %d of %d looks while pod-0's process not stopping did", tenant, n, of)
	}
}

// TestPresenceTwinsFilesDifferKeepsTheirTenantsFromAnother: of two
// processes under pod-0 whose tenants files differ, the one that serves
// the tenant works it, and pod-1, which ranks below pod-0 for it, does
// not. Before, pod-1 took the tenant at each beat of the process that
// does not serve it and gave it back at the other's.
func TestPresenceTwinsFilesDifferKeepsTheirTenantsFromAnother(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	var aside1 atomic.Bool
	tenant, p1, _, other := twinAndAnother(t, js, &aside1, true)
	waitFor(t, 5*time.Second, "the process of pod-0 that serves the tenant works it", func() bool { return p1.Assigned(tenant) })
	looks, both, late := 0, 0, 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		looks++
		before := other.liveInstance("pod-0", p1.Instance())
		worked := other.Assigned(tenant)
		after := other.liveInstance("pod-0", p1.Instance())
		switch {
		case !worked:
		case before.IsZero() || after.IsZero() || after.Sub(before) >= other.ttl:
			// The announcements of the process that serves the tenant,
			// or pod-1's own, came late to pod-1 (a loaded machine):
			// pod-1 took that process for gone, as it should.
			late++
		default:
			both++
		}
	}
	if both > 0 {
		t.Errorf("pod-1 worked %s at %d of %d looks while pod-0's process that serves it did and pod-1 counted that one alive", tenant, both, looks)
	}
	if late > 0 {
		t.Logf("pod-1 worked %s at %d of %d looks, the announcements of pod-0's process that serves it late to pod-1", tenant, late, looks)
	}
}

// liveInstance is when p first read the last entry of process instance
// under replica id that it holds (the id's entry, or the one before it
// of another process under that id, seen.twin), if that entry counts in
// the assignment now and p's view is Known; zero if not. Read twice
// around another look, two times less than a TTL apart say that the
// process's entries counted all along: an entry stops counting a TTL
// after it was read, and the next one came before. A view not Known
// (p's own announcements late to it) keeps the live replicas of its last
// look, which may have taken the process for gone, rightly.
func (p *Presence) liveInstance(id, instance string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.others[id]
	now := p.clock.Now()
	if !ok || !p.knownLocked(now) || !p.liveLocked(s, now) || p.staleLocked(s, now) {
		return time.Time{}
	}
	if s.instance == instance {
		return s.at
	}
	if s.twin == nil || s.twin.instance != instance || !p.liveLocked(*s.twin, now) {
		return time.Time{}
	}
	return s.twin.at
}

// TestPresenceTwinGoneLeavesItsTenantsToAnother: of two processes under
// pod-0 whose tenants files differ, the one that serves the tenant dies:
// pod-1, which serves it too, takes it once that one's last
// announcement no longer counts, though the other process under pod-0
// goes on announcing itself and nothing else changes.
func TestPresenceTwinGoneLeavesItsTenantsToAnother(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	tenant := "t0"
	for i := 0; rank("pod-0", tenant) < rank("pod-1", tenant); i++ {
		tenant = fmt.Sprintf("t%d", i)
	}
	const beat = 250 * time.Millisecond
	p1, err := NewPresence(t.Context(), js, PresenceOptions{ID: "pod-0", Tenants: []string{tenant}, Beat: beat, Bucket: Settings{}.Presence(), Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p1.Run(ctx) }()
	stop1 := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop1)
	testwait.For(t, p1.Current(), presenceStart, "the presence knows every announcement stored")
	p2 := runPresence(t, js, "pod-0", []string{"northwind"}, beat, zap.NewNop())
	other := runPresence(t, js, "pod-1", []string{tenant}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "pod-1 counts both processes under pod-0 alive", func() bool {
		return other.Known() && other.Running(p1.Instance()) && other.Running(p2.Instance())
	})
	waitFor(t, 5*time.Second, "pod-0 works the tenant", func() bool { return p1.Assigned(tenant) && !other.Assigned(tenant) })
	// The worker's gates hear of a change through Changed alone.
	changed := other.Changed()
	if other.Assigned(tenant) {
		t.Fatal("pod-1 works the tenant pod-0 serves")
	}
	// Dies: it withdraws nothing while the other process under pod-0
	// announces itself.
	stop1()
	waitFor(t, 3*time.Second, "pod-1 takes the tenant once the process that served it is gone", func() bool {
		return !other.Running(p1.Instance()) && other.Assigned(tenant)
	})
	select {
	case <-changed:
	case <-time.After(beat):
		t.Fatal("pod-1 takes the tenant, but its gates are not told: Changed is not closed")
	}
}
