package queue

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestPresenceAsideLeavesItsTenants: a replica aside (its clock off)
// leaves the tenants another replica serves to it, keeps those no other
// serves, and takes its share back once it is no longer aside. When both
// are aside (the NATS server's clock is the one off), each tenant is
// still worked by one of them.
func TestPresenceAsideLeavesItsTenants(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	start := func(id string, aside *atomic.Bool, tenants ...string) *Presence {
		return startAsidePresence(t, js, id, aside, tenants...)
	}
	var asideA, asideB atomic.Bool
	tenants := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	a := start("replica-a", &asideA, append(tenants, "only-a")...)
	b := start("replica-b", &asideB, tenants...)
	split := func() (onA, onB int) {
		for _, n := range tenants {
			if a.Assigned(n) {
				onA++
			}
			if b.Assigned(n) {
				onB++
			}
		}
		return onA, onB
	}
	waitFor(t, 5*time.Second, "the tenants split", func() bool { onA, onB := split(); return onA > 0 && onB > 0 && onA+onB == len(tenants) })

	asideA.Store(true)
	waitFor(t, 5*time.Second, "B works every tenant both serve", func() bool { onA, onB := split(); return onA == 0 && onB == len(tenants) })
	if !a.Assigned("only-a") {
		t.Error("A, aside, let go of a tenant no other replica serves")
	}
	asideB.Store(true)
	waitFor(t, 5*time.Second, "both aside: each tenant worked by one", func() bool { onA, onB := split(); return onA > 0 && onB > 0 && onA+onB == len(tenants) })
	asideA.Store(false)
	asideB.Store(false)
	waitFor(t, 5*time.Second, "the tenants split again", func() bool { onA, onB := split(); return onA > 0 && onB > 0 && onA+onB == len(tenants) })
}

// TestPresenceAsideTwinLeavesTheTenantsBothServe: of two processes
// started under one replica id by mistake, the one whose process mark is
// greater works the tenants both serve; when that one stands aside (its
// clock off), the other, which can make calls, works them, and gives them
// back once it no longer is. Before, the one aside kept them and their
// requests waited for as long as its clock was off, the other at hand.
func TestPresenceAsideTwinLeavesTheTenantsBothServe(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	start := func(aside *atomic.Bool) *Presence { return startAsidePresence(t, js, "pod-0", aside, "contoso") }
	var aside1, aside2 atomic.Bool
	p1, p2 := start(&aside1), start(&aside2)
	waitFor(t, 5*time.Second, "one of them works contoso", func() bool { return p1.Assigned("contoso") != p2.Assigned("contoso") })
	ahead, behind, asideAhead := p1, p2, &aside1
	if p2.Assigned("contoso") {
		ahead, behind, asideAhead = p2, p1, &aside2
	}
	asideAhead.Store(true)
	waitFor(t, 5*time.Second, "the one that can make calls works contoso", func() bool { return behind.Assigned("contoso") && !ahead.Assigned("contoso") })
	asideAhead.Store(false)
	waitFor(t, 5*time.Second, "the one ahead works contoso again", func() bool { return ahead.Assigned("contoso") && !behind.Assigned("contoso") })
}

// startAsidePresence runs a presence of these tenants under id, with a
// 250 ms beat, aside while aside holds, until the test ends; it returns
// once the presence knows the others.
func startAsidePresence(t *testing.T, js jetstream.JetStream, id string, aside *atomic.Bool, tenants ...string) *Presence {
	t.Helper()
	return startAsidePresenceLog(t, js, id, aside, zap.NewNop(), tenants...)
}

// startAsidePresenceLog is startAsidePresence logging to log.
func startAsidePresenceLog(t *testing.T, js jetstream.JetStream, id string, aside *atomic.Bool, log *zap.Logger, tenants ...string) *Presence {
	t.Helper()
	return runPresenceWith(t, js, PresenceOptions{ID: id, Tenants: tenants, Beat: 250 * time.Millisecond, Logger: log, Aside: aside.Load})
}

// TestPresenceAsideFromItsStartTakesNoTenant: a replica that can make no
// call when it starts (its quota journal not read yet) says so in its
// first announcement: the replica already serving the tenants keeps
// every one, and the new one takes its share within a quarter beat of
// being able to call, not at its next beat. Before, the first
// announcement took the new replica's share from the other at once, and
// those tenants waited for the new one's journal to be read (seconds
// for a journal of many busy tenants, at every start of a replica).
func TestPresenceAsideFromItsStartTakesNoTenant(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	start := func(id string, clock clockwork.Clock, aside *atomic.Bool) *Presence {
		return runPresenceWith(t, js, PresenceOptions{ID: id, Tenants: tenants, Clock: clock, Logger: zap.NewNop(), Aside: aside.Load})
	}
	var asideA, asideB atomic.Bool
	a := start("replica-a", clockwork.NewFakeClock(), &asideA)
	asideB.Store(true)
	clockB := clockwork.NewFakeClock()
	b := start("replica-b", clockB, &asideB)
	waitFor(t, 5*time.Second, "A reads B's announcement", func() bool { return a.Running(b.Instance()) })
	for _, n := range tenants {
		if !a.Assigned(n) || b.Assigned(n) {
			t.Errorf("%s: on A %v, on B %v; want A alone, B making no call", n, a.Assigned(n), b.Assigned(n))
		}
	}
	asideB.Store(false)
	if err := clockB.BlockUntilContext(t.Context(), 2); err != nil { // B's beat and its look for expired announcements
		t.Fatal(err)
	}
	clockB.Advance(PresenceBeat / 4)
	waitFor(t, 5*time.Second, "B takes its share within a quarter beat", func() bool {
		onA, onB := 0, 0
		for _, n := range tenants {
			if a.Assigned(n) {
				onA++
			}
			if b.Assigned(n) {
				onB++
			}
		}
		return onA > 0 && onB > 0 && onA+onB == len(tenants)
	})
}

// TestPresenceStartAsideSaysNoAgain: a replica that starts aside (its
// quota journal not read yet, at every start) says, once it can call,
// that it takes its share of the tenants; "makes calls again: it takes
// its tenants back" told every start of a replica that it had been
// stopped, and is kept for a replica that was set aside while it ran.
func TestPresenceStartAsideSaysNoAgain(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	var aside atomic.Bool
	aside.Store(true)
	startAsidePresenceLog(t, js, "replica-a", &aside, zap.New(core), "t0")
	said := func(msg string) bool { return logs.FilterMessage(msg).Len() > 0 }
	const first, again = "this replica can make calls now: it takes its share of the tenants", "this replica makes calls again: it takes its tenants back"
	aside.Store(false)
	waitFor(t, 5*time.Second, "the start's end said", func() bool { return said(first) })
	if said(again) {
		t.Errorf("the start said %q", again)
	}
	aside.Store(true)
	waitFor(t, 5*time.Second, "set aside", func() bool { return logs.FilterMessageSnippet("makes no call now").Len() > 0 })
	aside.Store(false)
	waitFor(t, 5*time.Second, "back", func() bool { return said(again) })
}
