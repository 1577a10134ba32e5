package queue

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestPresenceWarnsOfOtherGuardsOfLiveReplicasOnce: replica "a" starts
// over the entry of a replica that died long before without withdrawing
// and whose guards of contoso differ; then replica "b", live, with other
// guards again. "a" warns once of "b", naming the tenant, whatever the
// beats that follow, and never of the dead one, which works nothing;
// GuardsDiffer names "b" alone. Before, the dead replica's entry, read
// at the start, was warned of as another replica applying other guards.
func TestPresenceWarnsOfOtherGuardsOfLiveReplicasOnce(t *testing.T) {
	t.Parallel()
	const beat = 100 * time.Millisecond
	_, js := connect(t)
	cfg := Settings{}.Presence()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := json.Marshal(announcement{Tenants: []string{"contoso"}, Guards: map[string]string{"contoso": "dead-guards"}, Instance: "dead"})
	if _, err := kv.Put(t.Context(), "dead", dead); err != nil {
		t.Fatal(err)
	}
	// Stored longer ago than an announcement counts (three beats), by
	// the server's clock, which a fake one cannot move.
	time.Sleep(4 * beat)
	core, logs := observer.New(zap.WarnLevel)
	a := runPresenceWith(t, js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Guards: map[string]string{"contoso": "a-guards"},
		Beat: beat, Clock: clockwork.NewRealClock(), Logger: zap.New(core)})
	runPresenceWith(t, js, PresenceOptions{ID: "b", Tenants: []string{"contoso"}, Guards: map[string]string{"contoso": "b-guards"},
		Beat: beat, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	waitFor(t, 5*time.Second, "a sees b's other guards", func() bool { return slices.Equal(a.GuardsDiffer("contoso"), []string{"b"}) })
	from, err := kv.Get(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "ten beats of b", func() bool {
		e, err := kv.Get(t.Context(), "b")
		return err == nil && e.Revision() > from.Revision()+20 // a's beats count in the revisions too
	})
	warned := map[string]int{}
	for _, l := range logs.FilterMessageSnippet("another replica applies other guards").All() {
		f := l.ContextMap()
		if f["tenant"] != "contoso" {
			t.Errorf("warning of tenant %v", f["tenant"])
		}
		warned[f["replica"].(string)]++
	}
	if warned["b"] != 1 || len(warned) != 1 {
		t.Errorf("warnings by the replica they name: %v, want one naming b", warned)
	}
	if got := a.GuardsDiffer("contoso"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("GuardsDiffer %v, want [b]", got)
	}
}
