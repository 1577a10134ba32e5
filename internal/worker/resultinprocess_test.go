package worker

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// copyFirstJS is a JetStream client that publishes a copy of each message
// on subject, the first time its message id goes out, just before the
// message itself, on the same connection: the stream's leader reads the
// copy first and is still storing it on its replicas as the message
// comes ("duplicate message id is in process").
type copyFirstJS struct {
	jetstream.JetStream
	subject string
	t       *testing.T
	mu      sync.Mutex
	copied  map[string]bool
}

func (js *copyFirstJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	js.mu.Lock()
	id := m.Header.Get(jetstream.MsgIDHeader)
	if m.Subject == js.subject && !js.copied[id] {
		js.copied[id] = true
		if err := js.Conn().PublishMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
			js.t.Error(err)
		}
	}
	js.mu.Unlock()
	return js.JetStream.PublishMsgAsync(m, opts...)
}

// TestResultInProcess: on three clustered servers, the worker's result of
// a request is answered "duplicate message id is in process": a copy of
// it, as another delivery's replay from the ledger sends it, reached the
// results stream's leader a moment before. The request is left, taken
// again as soon as after an outage, answered from the ledger and acked:
// one result stored for each request, no dead letter, one action each.
// It was left for 5 s, as for a refusal (answered after 6.0 s instead of
// 2.0 s; 4 of 4 runs).
func TestResultInProcess(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 3)
	_, admin := c.Connect(t)
	settings := queue.Settings{Tenants: []string{"contoso"}, Replicas: 3}.WithDefaults()
	if _, err := queue.Ensure(t.Context(), admin, settings); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(t.Context(), admin, offboard.StreamResults)
	nc, js := natstest.ConnectTo(t, strings.Split(c.URLs(), ",")[leader])
	wjs := &copyFirstJS{JetStream: js, subject: settings.Subjects.Result("contoso"), t: t, copied: map[string]bool{}}
	core, logs := observer.New(zap.InfoLevel)
	e := setupLoopSim(t, mdesim.Options{}, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		ledger, err := queue.NewLedger(t.Context(), js)
		if err != nil {
			t.Fatal(err)
		}
		router, err := queue.NewRouter(nc, settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = router.Close() })
		o.JS, o.Ledger, o.Router, o.Settings = wjs, ledger, router, settings
		o.Logger = zap.New(core)
	}, nil)
	// A few requests, one after the other: the copy of a result may be
	// stored before the result comes, and then the result is a repeat.
	const requests = 3
	for i := range requests {
		machine := strings.Repeat(fmt.Sprint(i+2), 40)
		e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: machine, ComputerDNSName: fmt.Sprintf("pc-%d.contoso.local", i+2),
			OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
		id := fmt.Sprintf("r-%d", i)
		m := nats.NewMsg(settings.Subjects.Request("contoso", offboard.Normal))
		m.Data = fmt.Appendf(nil, `{"requestId":%q,"machineId":%q}`, id, machine)
		m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID("contoso", id, 0))
		start := time.Now()
		if _, err := admin.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		if !answered(t, admin, 30*time.Second) {
			t.Fatalf("%s not answered within 30 s", id)
		}
		t.Logf("%s answered and deleted after %v", id, time.Since(start).Round(time.Millisecond))
	}
	// Left for the answer, a request is taken again as soon as after an
	// outage.
	inProcess := 0
	for _, l := range logs.FilterMessage("request left for redelivery").All() {
		for _, f := range l.Context {
			if err, ok := f.Interface.(error); ok && f.Key == "error" && queue.InProcess(err) {
				inProcess++
				if d := e.w.leaveDelay(&job{}, err); d != outageRetry {
					t.Errorf("left %v for %v; want %v, as after an outage", d, err, outageRetry)
				}
			}
		}
	}
	if inProcess == 0 {
		t.Error("no result answered in process")
	}
	for stream, want := range map[string]uint64{offboard.StreamResults: requests, offboard.StreamDead: 0} {
		s, err := admin.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(settings.Subjects.Result("contoso")))
		if stream == offboard.StreamDead {
			info, err = s.Info(t.Context())
		}
		if err != nil || info.State.Msgs != want {
			t.Errorf("%s holds %+v (%v); want %d", stream, info.State, err, want)
		}
	}
	if n := len(e.sim.Actions(loopTenantID)); n != requests {
		t.Errorf("%d actions, want %d", n, requests)
	}
}

// answered waits until the request stream holds no request: each was
// answered and deleted.
func answered(t *testing.T, js jetstream.JetStream, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		s, err := js.Stream(t.Context(), offboard.StreamRequests)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := s.Info(t.Context()); err == nil && info.State.Msgs == 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
