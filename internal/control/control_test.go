package control_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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
	w, err := control.NewWatcher(t.Context(), js, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-w.Current()

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
	for !w.Paused("contoso", offboard.Bulk) { // the signal fires once the entry is applied
		<-w.Changed()
	}
	if w.Paused("contoso", offboard.Normal) {
		t.Error("normal paused too; only bulk was")
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "50/24h", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	for {
		ch := w.Changed()
		if v, ok := w.Budget("contoso"); ok {
			if v != "50/24h" {
				t.Errorf("budget %q, want 50/24h", v)
			}
			break
		}
		<-ch
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
