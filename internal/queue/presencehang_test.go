package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// hangingPuts is a presence bucket whose writes, while hang is set, get
// no answer: each fails once its time is up (jetstream's default timeout,
// for the context Run gives it, which has none), its reads going on.
type hangingPuts struct {
	jetstream.KeyValue
	hang    atomic.Bool
	timeout time.Duration
}

func (h *hangingPuts) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if !h.hang.Load() {
		return h.KeyValue.Put(ctx, key, value)
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(h.timeout):
		return 0, context.DeadlineExceeded
	}
}

// TestPresenceWhoseAnnouncementsHangLetsGo: as
// TestPresenceThatCannotAnnounceLetsGo, but each announcement waits half
// a beat for an answer that never comes before it fails (NATS away from
// this replica alone): the replica lets go of the tenant the other took,
// and does not take it back while each announcement is on its way. Before,
// it kept the tenant half the time, the two working it for as long as its
// announcements failed, and it was told of a change twice a beat.
//
// The replicas work the tenant both only while a counts b alive, which
// is read before and after each look: b's announcements, a beat apart, can come to
// a more than three beats apart on a loaded machine, and a then takes b
// for gone, rightly. Before, such looks failed it (28 of 197 at load 8).
func TestPresenceWhoseAnnouncementsHangLetsGo(t *testing.T) {
	t.Parallel()
	const beat = 200 * time.Millisecond // at 100 ms, a loaded machine failed it now and then
	tenant := rankedFirst(t, "a", "b")
	_, js := connect(t)
	cfg := Settings{}.Presence()
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{tenant}, Beat: beat, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingPuts{KeyValue: a.kv, timeout: beat / 2}
	a.kv = h
	runCurrent(t, a)
	b := runPresence(t, js, "b", []string{tenant}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "a works the tenant, b not", func() bool { return a.Assigned(tenant) && !b.Assigned(tenant) })

	h.hang.Store(true)
	waitFor(t, 5*time.Second, "b takes a for gone", func() bool { return b.Assigned(tenant) })
	// a's announcement on its way then fails and a lets go: from then on,
	// it takes the tenant back no more (a fixed two beats' wait was too
	// short on a loaded machine).
	waitFor(t, 5*time.Second, "a lets go of the tenant", func() bool { return !a.Assigned(tenant) })
	looks, both, late := 0, 0, 0
	for end := time.Now().Add(30 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		looks++
		before := a.liveFor("b")
		worked := a.Assigned(tenant) && b.Assigned(tenant)
		after := a.liveFor("b")
		switch {
		case !worked:
		case before.IsZero() || after.IsZero() || after.Sub(before) >= a.ttl:
			// b's announcements came late to a (a loaded machine):
			// a took b for gone, as it should.
			late++
		default:
			both++
		}
	}
	if both > 0 {
		t.Errorf("both replicas worked the tenant at %d of %d looks while a's announcements hung and a counted b alive", both, looks)
	}
	if late > 0 {
		t.Logf("both replicas worked the tenant at %d of %d looks, b's announcements late to a", late, looks)
	}

	h.hang.Store(false)
	waitFor(t, 5*time.Second, "a works the tenant again, b not", func() bool { return a.Assigned(tenant) && !b.Assigned(tenant) })
}

// liveFor is when p first read the entry of replica id that it holds,
// if that entry counts in the assignment now (read within the TTL, not
// stored long before); zero if it does not. Read twice around another
// look, two times less than a TTL apart say that b's entries counted all
// along: an entry stops counting a TTL after it was read, and the next
// one came before.
func (p *Presence) liveFor(id string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.others[id]
	now := p.clock.Now()
	if !ok || !p.liveLocked(s, now) || p.staleLocked(s, now) {
		return time.Time{}
	}
	return s.at
}
