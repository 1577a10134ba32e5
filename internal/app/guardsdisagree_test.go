package app

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestGuardsDisagreeGaugeAndWarning: replica B's tenants file protects
// the domain controllers, replica A's does not (a ConfigMap edited on one
// deployment only). Each replica's mde_offboard_guards_disagree for the
// tenant goes to 1, and each logs one warning naming the tenant and the
// other replica, not one a beat; once B stops, A's gauge is back to 0.
func TestGuardsDisagreeGaugeAndWarning(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, logger: zap.New(core), noStart: true})
	e.opts.PresenceBeat = 200 * time.Millisecond
	e.opts.ReplicaID = "replica-a"
	e.start()
	gauge := func(reg *env) float64 {
		return metricValue(t, reg, "mde_offboard_guards_disagree", map[string]string{"tenant": "contoso"})
	}
	if v := gauge(e); v != 0 {
		t.Fatalf("alone: mde_offboard_guards_disagree %v, want 0", v)
	}
	other := *e.opts.Tenants.Tenants[0]
	other.Guards = config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc*.contoso.local"}}}
	o := e.opts
	e.opts.ReplicaID = "replica-b"
	b := e.startReplicaOf(e.app.NATSURL(), &config.File{Tenants: []*config.Tenant{&other}})
	e.opts = o
	eventually(t, 10*time.Second, "both replicas' gauges at 1", func() bool {
		return gauge(e) == 1 && gauge(&env{reg: b.reg}) == 1
	})
	// Ten beats of each: still one warning each.
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(id string) uint64 {
		en, err := kv.Get(t.Context(), id)
		if err != nil {
			return 0
		}
		return en.Revision()
	}
	from := max(entry("replica-a"), entry("replica-b"))
	eventually(t, 10*time.Second, "ten beats of each replica", func() bool {
		return entry("replica-a") > from+20 && entry("replica-b") > from+20
	})
	warned := map[string]int{}
	for _, l := range logs.FilterMessageSnippet("another replica applies other guards").All() {
		f := l.ContextMap()
		if f["tenant"] != "contoso" {
			t.Errorf("warning of tenant %v", f["tenant"])
		}
		warned[f["replica"].(string)]++
	}
	if warned["replica-a"] != 1 || warned["replica-b"] != 1 || len(warned) != 2 {
		t.Errorf("warnings by the replica they name: %v, want one naming each", warned)
	}
	if err := b.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "replica-a's gauge back at 0", func() bool { return gauge(e) == 0 })
}
