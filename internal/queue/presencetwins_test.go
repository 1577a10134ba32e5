package queue

import (
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
	const beat = 100 * time.Millisecond
	p := runPresence(t, js, "z", []string{"northwind"}, beat, zap.NewNop())
	announceAs(t, js, "pod-0", beat, announcement{Tenants: []string{"contoso"}, Instance: "first"})
	// Half a beat apart: a watch of a bucket that keeps one revision
	// per key misses one overwritten before it is delivered.
	time.Sleep(beat / 2)
	announceAs(t, js, "pod-0", beat, announcement{Tenants: []string{"fabrikam"}, Instance: "second"})
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
