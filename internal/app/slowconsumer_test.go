package app

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// slowEpisodes has a subscription of the worker's connection fall behind
// episodes times: each time the client drops a message (a slow consumer)
// and reports it, the episode ending as the handler takes the next.
func slowEpisodes(t *testing.T, e *env, episodes int) *nats.Subscription {
	t.Helper()
	gate := make(chan struct{})
	entered := make(chan struct{}, episodes+1) // one message per episode taken, and the first
	sub, err := e.app.nc.Subscribe("slow.test", func(*nats.Msg) {
		entered <- struct{}{}
		<-gate
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(gate)
		_ = sub.Unsubscribe()
	})
	// One message in the handler, one waiting: the next is dropped (the
	// client counts the one in the handler as pending until it returns).
	if err := sub.SetPendingLimits(2, -1); err != nil {
		t.Fatal(err)
	}
	if err := e.app.nc.Flush(); err != nil { // the server knows the subscription
		t.Fatal(err)
	}
	publish := func(n int) {
		for range n {
			if err := e.nc.Publish("slow.test", []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	taken := func() {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler took no message in 10s")
		}
	}
	publish(1)
	taken()
	for i := range episodes {
		publish(2) // the first waits (ending the episode before), the second is dropped
		for until := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if d, _ := sub.Dropped(); d > i {
				break
			}
			if time.Now().After(until) {
				t.Fatalf("episode %d: no message dropped after 10s", i+1)
			}
		}
		gate <- struct{}{} // the handler takes the one waiting
		taken()
	}
	return sub
}

// TestSlowConsumerIsLoggedOnceAndCounted: a subscription of the worker's
// connection that falls behind loses messages. Each time, the client
// reports it; the worker counts every report in
// mde_offboard_nats_slow_consumers_total and logs one line, naming the
// subscription, at most once a minute: a subscription that stays just
// behind its publishers is reported about once per message it takes
// (measured: 1,872 reports for 17,534 messages dropped in 5 s), each a
// warning before.
func TestSlowConsumerIsLoggedOnceAndCounted(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, logger: zap.New(core)})
	const episodes = 5
	slowEpisodes(t, e, episodes)
	// The reports come on the client's own goroutine.
	for until := time.Now().Add(10 * time.Second); metricValue(t, e, "mde_offboard_nats_slow_consumers_total", nil) < episodes; time.Sleep(time.Millisecond) {
		if time.Now().After(until) {
			break
		}
	}
	if got := metricValue(t, e, "mde_offboard_nats_slow_consumers_total", nil); got != episodes {
		t.Errorf("mde_offboard_nats_slow_consumers_total = %v, want %d", got, episodes)
	}
	var lines []observer.LoggedEntry
	for _, l := range logs.All() {
		if l.ContextMap()["subject"] == "slow.test" || l.Message == "NATS reported an error" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d log lines for %d slow consumer reports, want 1: %v", len(lines), episodes, lines)
	}
	if lines[0].Message != "a NATS subscription fell behind: the client dropped messages (slow consumer)" {
		t.Errorf("logged %q", lines[0].Message)
	}
}

// TestSlowConsumerLogsAgainAfterAMinute: reports within a minute of the
// line logged are counted in the next one, logged at the first report a
// minute or more later.
func TestSlowConsumerLogsAgainAfterAMinute(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	clock := clockwork.NewFakeClock()
	s := &slowConsumers{log: zap.New(core), clock: clock, reports: newSlowConsumersCounter()}
	s.seen("a", 3)
	clock.Advance(30 * time.Second)
	s.seen("b", 4)
	s.seen("a", 7)
	clock.Advance(30 * time.Second)
	s.seen("b", 9)
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d lines, want 2: %v", len(all), all)
	}
	first, second := all[0].ContextMap(), all[1].ContextMap()
	if first["subject"] != "a" || first["dropped"] != int64(3) || first["reports_since_last_line"] != int64(1) {
		t.Errorf("first line %v", first)
	}
	if second["subject"] != "b" || second["dropped"] != int64(9) || second["reports_since_last_line"] != int64(3) {
		t.Errorf("second line %v", second)
	}
}
