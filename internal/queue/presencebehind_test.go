package queue

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// TestPresenceBehindTellsWhatItAssigns: a replica whose announcements
// cannot be stored, while its watch works, goes on reading the others'.
// When one of them stops (or steps aside), this one's Assigned takes that
// replica's tenant, and Changed says so, as the worker's gates follow
// Changed alone. Before, Changed stayed open: Assigned said yes while the
// tenant's gate stayed shut and its gauge said 0, and no replica worked
// the tenant until the stopping one withdrew.
func TestPresenceBehindTellsWhatItAssigns(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	tenant := rankedFirst(t, "b", "a")
	_, js := connect(t)
	cfg := Settings{}.Presence()
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{tenant}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	f := runFailingPuts(t, a)
	b := runPresence(t, js, "b", []string{tenant}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "b works the tenant, a not", func() bool { return b.Assigned(tenant) && !a.Assigned(tenant) })

	f.fail.Store(true)
	waitFor(t, 5*time.Second, "a leaves to b what b serves", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.yield) == 1 && !a.knownLocked(a.clock.Now())
	})
	changed := a.Changed()
	if a.Assigned(tenant) {
		t.Fatal("a works the tenant b serves")
	}
	if err := b.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a takes the tenant of b, which stops", func() bool { return a.Assigned(tenant) })
	select {
	case <-changed:
	case <-time.After(5 * beat):
		t.Fatal("a's Assigned changed, its Changed not")
	}
}

// TestPresenceThatCannotAnnounceKeepsWhatOnlyAnAsideReplicaServes: a
// replica whose announcements cannot be stored leaves to the others the
// tenants they serve, but not to one aside (its clock off), which makes
// no call: the tenant would wait for its clock. Before, such a tenant
// was worked by no replica that could call for as long as both lasted.
func TestPresenceThatCannotAnnounceKeepsWhatOnlyAnAsideReplicaServes(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	_, js := connect(t)
	cfg := Settings{}.Presence()
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	f := runFailingPuts(t, a)
	b := runPresenceWith(t, js, PresenceOptions{ID: "b", Tenants: []string{"contoso"}, Beat: beat, Logger: zap.NewNop(), Aside: func() bool { return true }})
	waitFor(t, 5*time.Second, "a works the tenant, b aside not", func() bool { return a.Assigned("contoso") && !b.Assigned("contoso") })

	f.fail.Store(true)
	waitFor(t, 5*time.Second, "a's last announcement expired", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.yield) == 1
	})
	for end := time.Now().Add(5 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		if !a.Assigned("contoso") {
			t.Fatal("a left the tenant to b, which is aside")
		}
	}
}
