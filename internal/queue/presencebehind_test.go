package queue

import (
	"encoding/json"
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

// TestPresenceWithdrawalReadWhileBehindCountsForATTL: a replica cut off
// from NATS for longer than an announcement counts reads, once back, that
// the only replica serving fabrikam withdrew meanwhile (a restart under
// its name, under way). fabrikam still counts as served for one TTL, as
// when the withdrawal is read at once. Before, the last announcement of
// the withdrawn replica, read before the outage, no longer counted: its
// tenants were served by nobody the moment the view was current again,
// and their waiting requests answered unknown_tenant while it restarted.
func TestPresenceWithdrawalReadWhileBehindCountsForATTL(t *testing.T) {
	t.Parallel()
	const beat = time.Second
	_, js := connect(t)
	cfg := Settings{}.Presence()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClock()
	a, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Beat: beat, Bucket: cfg, Clock: clock, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	f := runFailingPuts(t, a)
	b, _ := json.Marshal(announcement{Tenants: []string{"contoso", "fabrikam"}, Instance: "b"})
	if _, err := kv.Put(t.Context(), "b", b); err != nil {
		t.Fatal(err)
	}
	holds := func(id string) bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.others[id]
		return ok
	}
	// The next beat, its echo read, makes the view current.
	beatKnown := func(what string) {
		t.Helper()
		clock.Advance(beat)
		waitFor(t, 5*time.Second, what, a.Known)
	}
	waitFor(t, 5*time.Second, "b's announcement read", func() bool { return holds("b") })
	beatKnown("a's view current")
	if !a.Serves("fabrikam") {
		t.Fatal("fabrikam, which b serves, taken for served by nobody")
	}

	// Cut off from NATS: a's announcements fail, b's beats do not reach it.
	f.fail.Store(true)
	clock.Advance(2 * a.ttl)
	waitFor(t, 5*time.Second, "a's view behind", func() bool { return !a.Known() })
	if err := kv.Delete(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b's withdrawal read", func() bool { return !holds("b") })
	f.fail.Store(false)
	beatKnown("a's view current again")
	if !a.Serves("fabrikam") {
		t.Fatalf("fabrikam taken for served by nobody as soon as a's view was current again, %v after it read b's withdrawal; want it counted for a TTL (%v)", beat, a.ttl)
	}
	for range a.ttl/beat - 2 {
		beatKnown("a's view current")
		if !a.Serves("fabrikam") {
			t.Fatalf("fabrikam taken for served by nobody before a TTL (%v) after b's withdrawal was read", a.ttl)
		}
	}
	beatKnown("a's view current")
	if a.Serves("fabrikam") {
		t.Fatalf("fabrikam still served a TTL (%v) after b's withdrawal was read", a.ttl)
	}
}
