package worker

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPauseDuringTheGuardsReadHoldsTheCall: a request whose device is read
// again for the guards just before its call (the read it was judged on is
// more than a second old) gets no call when an operator pauses its tenant
// while that read waits (a backoff after a 5xx; the machines quota, a
// 429's pause): the pause, checked before the read, is checked again
// after it.
func TestPauseDuringTheGuardsReadHoldsTheCall(t *testing.T) {
	t.Parallel()
	var watcher *control.Watcher
	e := setupLoopOpts(t, `["100/1m"]`, "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n",
		RetryPolicy{Base: time.Minute, Max: time.Minute}, func(o *Options) {
			ctx, cancel := context.WithCancel(context.Background())
			var err error
			if watcher, err = control.NewWatcher(ctx, o.JS, zap.NewNop()); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); _ = watcher.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			waitCurrent(t, watcher)
			o.Control = watcher
		})
	store, err := control.Open(t.Context(), e.js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}

	tr := e.w.tenants["contoso"]
	j := &job{t: tr, prio: offboard.Normal, req: offboard.Request{RequestID: "r-1", MachineID: loopMachine}, log: zap.NewNop()}
	m := mde.Machine{ID: loopMachine, ComputerDNSName: "pc-1.contoso.local", LastSeen: time.Now().Add(-time.Hour).Format(time.RFC3339)}
	// Judged two seconds ago: the device is read again before the call.
	dev := &device{id: loopMachine, machine: &m, read: e.clock.Now().Add(-2 * time.Second), policy: &offboard.Policy{Checked: []string{"protect"}}}
	e.sim.InjectStatus(loopTenantID, mde.APIMachines, http.StatusInternalServerError, "", "", 1, 0)

	type answer struct {
		res *offboard.Result
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := e.w.beforeCall(t.Context(), j, dev)
		got <- answer{res, err}
	}()
	// The read's first attempt failed: it waits out its backoff. The
	// operator pauses the tenant meanwhile.
	deadline := time.Now().Add(20 * time.Second)
	for e.machineReads() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the device was not read again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionPause, Priority: control.PriorityAll, By: "test"}); err != nil {
		t.Fatal(err)
	}
	for !watcher.Paused("contoso", offboard.Normal) {
		if time.Now().After(deadline) {
			t.Fatal("the pause did not reach the watcher")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case a := <-got:
			if e.machineReads() != 2 {
				t.Errorf("%d reads of the device, want 2 (a 500, then the device)", e.machineReads())
			}
			if !errors.Is(a.err, errPausedWhileWaiting) {
				t.Fatalf("beforeCall = %+v, %v after a pause during the device's read; want errPausedWhileWaiting: no call while paused", a.res, a.err)
			}
			return
		case <-tick.C:
			e.clock.Advance(10 * time.Second)
		case <-time.After(time.Until(deadline)):
			t.Fatal("beforeCall did not return")
		}
	}
}

// machineReads counts the GET /api/machines/{id} calls of the device.
func (e *loopEnv) machineReads() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.API == mde.APIMachines && c.MachineID == loopMachine {
			n++
		}
	}
	return n
}
