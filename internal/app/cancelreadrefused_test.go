package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestCancelReadRefusedToTheWorkersUser: under --no-setup, the worker's
// NATS user narrowed to no consumer create on MDE_OFFBOARD_REQUESTS, a
// cancel whose pass set aside 200 requests of the bulk lane cannot read
// past them: NATS refuses the read's consumer, which the client sees
// only as a request with no answer. The read is given up at once, with
// a warning that names the permission, and the campaign's row is left
// to its delivery. Before, the refusal was taken for an outage and the
// read made again every few seconds for as long as the replica served
// the tenant, each time refused anew.
func TestCancelReadRefusedToTheWorkersUser(t *testing.T) {
	t.Parallel()
	requests := "MDE_OFFBOARD_REQUESTS"
	url := natstest.StartWithUsers(t, &server.User{Username: "admin", Password: "a"}, &server.User{Username: "worker", Password: "w", Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{">"},
			Deny:  []string{"$JS.API.CONSUMER.CREATE." + requests, "$JS.API.CONSUMER.CREATE." + requests + ".>"},
		},
	}})
	core, logs := observer.New(zap.DebugLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true,
		logger: zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core(), core))})
	e.connect(strings.Replace(url, "nats://", "nats://admin:a@", 1))
	if _, err := queue.Ensure(t.Context(), e.js, queue.Settings{Tenants: []string{"contoso"}, AckWait: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	e.opts.NATSURL, e.opts.NoSetup = strings.Replace(url, "nats://", "nats://worker:w@", 1), true
	e.start()
	e.nc.Close()
	e.connect(strings.Replace(url, "nats://", "nats://admin:a@", 1))
	e.control(control.ActionPause, "contoso", control.PriorityAll)
	time.Sleep(time.Second) // the contract's time for a control to take effect
	m := e.tenants["contoso"].machines[0]
	for i := range 250 {
		id := campaign.RequestID("wave1", i+1)
		e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": m.ID}, "contoso:"+id)
	}
	far := campaign.RequestID("wave2", 1)
	e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": far, "machineId": m.ID}, "contoso:"+far)
	time.Sleep(300 * time.Millisecond)
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave2", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	refused := func() []observer.LoggedEntry {
		return logs.FilterMessageSnippet("read the requests waiting behind those a cancel's pass set aside").All()
	}
	givenUp := func() bool {
		for _, l := range refused() {
			if strings.Contains(l.Message, "given up") {
				return true
			}
		}
		return false
	}
	for !givenUp() {
		if time.Since(cancelled) > 12*time.Second {
			t.Fatalf("the read not given up within 12 s of the cancel: made %d times, each refused", len(refused()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("given up %v after the cancel", time.Since(cancelled).Round(100*time.Millisecond))
	time.Sleep(4 * time.Second) // a read made again would have been refused again
	var lines []string
	for _, l := range refused() {
		lines = append(lines, fmt.Sprintf("%s %v", l.Message, l.ContextMap()))
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "$JS.API.CONSUMER.CREATE") {
		t.Errorf("read logged %d times: %q; want once, given up, naming $JS.API.CONSUMER.CREATE", len(lines), lines)
	}
}
