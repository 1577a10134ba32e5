package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelReadAskedOnANewAssignmentIsMade: a tenant's read past a
// cancel's pass runs under the tenant's assignment. The tenant moves
// away (the assignment ends) and back, and a cancel's pass under the new
// assignment asks for a read while the one begun under the old
// assignment is still winding down: the read asked for is made, under
// the new assignment, once the old one is over. Before, the old read's
// loop took the new ask, found its own assignment ended and dropped it:
// the cancel's rows behind the 200 a pass sets aside waited for their
// delivery, hours behind the others, and no later pass of that cancel
// asked again.
func TestCancelReadAskedOnANewAssignmentIsMade(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subjects := s.WithDefaults().Subjects
	if _, err := js.Publish(t.Context(), subjects.Request("contoso", offboard.Bulk), []byte(`{"requestId":"r-1"}`)); err != nil {
		t.Fatal(err)
	}
	router, err := queue.NewRouter(nc, subjects)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	src, err := router.Source(t.Context(), js, "contoso", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	w := &Worker{opts: Options{JS: js}, requests: requests, behindSlots: make(chan struct{}, behindReadsAtOnce)}
	tr := &tenantRun{name: "contoso", source: src, log: zap.New(core), repeats: newRepeats(clockwork.NewRealClock())}

	// The read begun under the old assignment, not over yet.
	old, moved := context.WithCancel(t.Context())
	tr.behind.running, tr.behind.ctx = true, old
	moved()
	// The new assignment's pass asks for the bulk lane.
	w.withdrawBehind(t.Context(), tr, []offboard.Priority{offboard.Bulk})
	// The old read's loop goes on once its read is over.
	w.runBehind(tr)

	reads := logs.FilterMessageSnippet("read the requests waiting behind").All()
	if len(reads) != 1 || reads[0].ContextMap()["read"] != int64(1) {
		t.Fatalf("reads logged: %v; want one, of the lane's one request", reads)
	}
	if tr.behind.running {
		t.Error("the reads are over, and still said to run")
	}
}
