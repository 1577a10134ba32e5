package worker

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// staleBoard is a switchboard that also says whether its controls are
// read since the connection to NATS came back (freshness).
type staleBoard struct {
	*switchboard
	mu    sync.Mutex
	fresh bool
}

func (b *staleBoard) Fresh() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fresh
}

// read marks the controls read anew, and signals it as the watcher does.
func (b *staleBoard) read() {
	b.mu.Lock()
	b.fresh = true
	b.mu.Unlock()
	b.switchboard.mu.Lock()
	defer b.switchboard.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
}

// TestStaleTenantWaitsForTheControls: the requests of a tenant no replica
// serves any more, held by its consumer left in place, are answered
// unknown_tenant only once the controls are read since NATS came back: a
// pause written during the cut holds them, none failed. Before, the
// drain answered them with the controls read before the cut, while the
// tenants served waited for the controls.
func TestStaleTenantWaitsForTheControls(t *testing.T) {
	t.Parallel()
	board := &staleBoard{switchboard: newSwitchboard()}
	e, results := withOldco(t, board)
	select {
	case r := <-results:
		t.Fatalf("answered %s (%+v) while the controls were not read since NATS came back", r.Outcome, r.Error)
	case <-time.After(2 * time.Second):
	}

	board.read()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the stale drain's waits between looks
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				e.clock.Advance(time.Second)
			}
		}
	}()
	if r := testwait.For(t, results, 20*time.Second, "o-1's result"); r.Error == nil || r.Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("result %s %+v, want unknown_tenant", r.Outcome, r.Error)
	}
}

// resume lifts a pause, and signals it as the watcher does.
func (b *staleBoard) resume(tenant string, p offboard.Priority) {
	b.switchboard.mu.Lock()
	defer b.switchboard.mu.Unlock()
	delete(b.paused, tenant+"/"+string(p))
	close(b.changed)
	b.changed = make(chan struct{})
}

// TestStaleTenantResumedAtOnce: a resume of a paused tenant no replica
// serves lets its drain answer the requests held at once, as a resume
// does a served tenant's, within the second a control has to take
// effect. Before, the drain looked again only after its poll (2 s by
// default): here, on a clock that does not move, never.
func TestStaleTenantResumedAtOnce(t *testing.T) {
	t.Parallel()
	board := &staleBoard{switchboard: newSwitchboard(), fresh: true}
	board.paused["oldco/"+string(offboard.Normal)] = true
	_, results := withOldco(t, board)
	select {
	case r := <-results:
		t.Fatalf("answered %s (%+v) while paused", r.Outcome, r.Error)
	case <-time.After(time.Second):
	}
	board.resume("oldco", offboard.Normal)
	if r := testwait.For(t, results, 5*time.Second, "o-1's result after the resume"); r.Error == nil || r.Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("result %s %+v, want unknown_tenant", r.Outcome, r.Error)
	}
}

// resultsOf delivers the results published for tenant (a plain
// subscription, so repeats too) until the test ends; n of them can wait.
func resultsOf(t *testing.T, js jetstream.JetStream, tenant string, n int) <-chan offboard.Result {
	t.Helper()
	results := make(chan offboard.Result, n)
	sub, err := js.Conn().Subscribe(offboard.Subjects{}.Result(tenant), func(m *nats.Msg) {
		var r offboard.Result
		if json.Unmarshal(m.Data, &r) == nil {
			results <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return results
}

// withOldco starts a loop whose controls are board, beside the consumers
// of oldco, a tenant no replica serves any more, and publishes one request
// of oldco, o-1; results delivers oldco's results.
func withOldco(t *testing.T, board *staleBoard) (e *loopEnv, results <-chan offboard.Result) {
	t.Helper()
	e = setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		if _, err := queue.Ensure(t.Context(), o.JS, queue.Settings{Tenants: []string{"contoso", "oldco"}}); err != nil {
			t.Fatal(err)
		}
		o.Stale = []string{queue.ConsumerName("oldco", offboard.Normal), queue.ConsumerName("oldco", offboard.Bulk)}
		o.Control = board
	})
	results = resultsOf(t, e.js, "oldco", 4)
	m := nats.NewMsg(offboard.Subjects{}.Request("oldco", offboard.Normal))
	m.Data = []byte(`{"requestId":"o-1","machineId":"` + loopMachine + `"}`)
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	return e, results
}
