package worker

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// fellBehind is a presence whose view of the other replicas fell behind
// just after it was asked whether it is known: Serves, which cannot say
// no while the view is behind, says yes for every tenant.
type fellBehind struct{}

func (fellBehind) Serves(string) bool  { return true }
func (fellBehind) Known() bool         { return true }
func (fellBehind) Instance() string    { return "" }
func (fellBehind) Running(string) bool { return true }

// TestRequestOfNoTenantNameIsAnsweredWhateverThePresenceSays: requests on
// subjects whose tenant token is no tenant name (Contoso, cöntoso) are
// answered unknown_tenant by the unrouted consumer even when the presence
// says the token is served: no replica can serve such a token and no
// consumer holds its requests. Before, such a request was let go, as one
// of a served tenant, when the presence's view fell behind between its
// two questions; it waited in the stream for nobody, and the sweep of the
// unrouted consumer's answered requests (queue.SweepUnrouted) deleted it
// unanswered.
func TestRequestOfNoTenantNameIsAnsweredWhateverThePresenceSays(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) { o.Presence = fellBehind{} })
	results := resultsOf(t, e.js, queue.UnknownTenant, 8)
	tokens := []string{"Contoso", "c\u00f6ntoso"}
	for _, token := range tokens {
		m := nats.NewMsg(offboard.DefaultPrefix + ".request." + token)
		m.Data = []byte(`{"requestId":"r-` + token + `","machineId":"` + loopMachine + `"}`)
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	for range tokens {
		select {
		case r := <-results:
			if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeUnknownTenant {
				t.Errorf("result %s %s %+v, want failed unknown_tenant", r.RequestID, r.Outcome, r.Error)
			}
			answered++
		case <-time.After(5 * time.Second):
		}
	}
	// Whatever the unrouted consumer did with them is done once its ack
	// floor is past them; then the sweep runs as the stats loop runs it.
	unrouted, err := e.js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unrouted consumer past the requests", func() bool {
		info, err := unrouted.Info(t.Context())
		return err == nil && info.AckFloor.Stream >= uint64(len(tokens))
	})
	e.w.sweepOthers(t.Context(), &sweepPass{})
	stream, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(offboard.Subjects{}.AllRequests()))
	if err != nil {
		t.Fatal(err)
	}
	if answered != len(tokens) {
		t.Errorf("%d of %d requests answered; %d left in the stream", answered, len(tokens), info.State.Msgs)
	}
	if calls := len(e.sim.Calls()); calls != 0 {
		t.Errorf("%d API calls for requests of no tenant", calls)
	}
}
