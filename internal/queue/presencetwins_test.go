package queue

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestPresenceCountsTwoProcessesUnderAnotherID: two processes started
// under one replica id by mistake (not this replica's) announce
// themselves in turn under one key, each with its own tenants. Both are
// alive, and every tenant either serves is served. Before, only the one
// that announced last counted: at every beat of the other, Running said
// no to the first one's instance (a call of its taken for a dead
// process's) and Serves said no to the tenants only it serves.
func TestPresenceCountsTwoProcessesUnderAnotherID(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	const beat = 200 * time.Millisecond
	p := runPresence(t, js, "z", []string{"northwind"}, beat, zap.NewNop())
	// Half a beat apart, each every beat: a watch of a bucket that keeps
	// one revision per key misses one overwritten before it is
	// delivered. One loop puts both in turn, so that a loaded machine's
	// scheduling cannot bring the two together.
	kv, err := js.KeyValue(t.Context(), BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	var turns [2][]byte
	for i, a := range []announcement{{Tenants: []string{"contoso"}, Instance: "first"}, {Tenants: []string{"fabrikam"}, Instance: "second"}} {
		if turns[i], err = json.Marshal(a); err != nil {
			t.Fatal(err)
		}
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(beat / 2)
		defer tick.Stop()
		for i := 0; ; i++ {
			_, _ = kv.Put(context.Background(), "pod-0", turns[i%2]) // a lost beat is a late one
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-stopped
	})
	both := func() bool {
		return p.Known() && p.Running("first") && p.Running("second") && p.Serves("contoso") && p.Serves("fabrikam")
	}
	waitFor(t, 5*time.Second, "both processes under pod-0 alive, and each one's tenant served", both)
	for end := time.Now().Add(10 * beat); time.Now().Before(end); time.Sleep(beat / 10) {
		if !p.Known() {
			continue
		}
		if !p.Running("first") || !p.Running("second") {
			t.Fatalf("a process under pod-0, announcing itself every beat, taken for gone (first %v, second %v)",
				p.Running("first"), p.Running("second"))
		}
		if !p.Serves("contoso") || !p.Serves("fabrikam") {
			t.Fatalf("a tenant of a process under pod-0 taken for served by no replica (contoso %v, fabrikam %v)",
				p.Serves("contoso"), p.Serves("fabrikam"))
		}
	}
}
