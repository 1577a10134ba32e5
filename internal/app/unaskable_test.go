package app

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestCallUnderWayElsewhereIsToldOncePerMinute: a request whose "calling"
// entry names a process that lives (its announcement counts) and does
// not answer whether it still holds the request is left and taken again
// every 5 s. After a crash with thousands of calls under way, or with a
// replica whose NATS user may not be asked (no subscribe on
// mde.offboard.working.>), each round logged a line at info: about 2,000
// a second for 15–20 s with 10,000 calls. The line is now told once per
// tenant and minute, with how many were left out.
func TestCallUnderWayElsewhereIsToldOncePerMinute(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: 30 * time.Second, logger: zap.New(core)})
	e.stop()
	js, _, stop := callingLeft(t, e, time.Now().Add(-2*time.Second), "silent-process")
	announceReplica(t, js, "silent-replica", "silent-process")
	stop()
	e.opts.PresenceBeat = time.Second // announcements count 3 s
	e.start()
	keepAnnouncing(t, e.js, 500*time.Millisecond, "silent-replica", "silent-process")
	const line = "request left for redelivery: its call may still be under way elsewhere"
	// Three rounds: taken at the start, 5 s and 10 s after.
	eventually(t, 20*time.Second, "the request left three times", func() bool {
		return logs.FilterMessage(line).Len() >= 3
	})
	if n := logs.FilterMessage(line).FilterLevelExact(zapcore.InfoLevel).Len(); n != 1 {
		t.Errorf("%d lines at info for one tenant's request left three times in 10 s, want 1", n)
	}
	if n := logs.FilterMessage(line).FilterLevelExact(zapcore.DebugLevel).Len(); n < 2 {
		t.Errorf("%d lines at debug, want the rounds left out (2 or more)", n)
	}
}

// TestWorkerThatCannotBeAskedSaysSo: a worker whose NATS user may not
// subscribe to mde.offboard.working.> cannot tell other replicas whether
// a request is in its hands; one that takes up such a request after a
// consumer was made again leaves it, asking every 5 s, until the calling
// lease (2 h) ends. NATS says no to the subscription only in an
// asynchronous error, which nothing logged: the worker now checks its
// subscription at the start and logs an error naming what to grant.
func TestWorkerThatCannotBeAskedSaysSo(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithUsers(t, &server.User{Username: "admin", Password: "a"}, &server.User{Username: "worker", Password: "w", Permissions: &server.Permissions{
		Subscribe: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"mde.offboard.working.>"}},
	}})
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, logger: zap.New(core), noStart: true})
	e.opts.NATSURL = strings.Replace(url, "nats://", "nats://worker:w@", 1)
	e.start()
	eventually(t, 10*time.Second, "an error about the working subscription", func() bool {
		for _, l := range logs.FilterLevelExact(zapcore.ErrorLevel).All() {
			if strings.Contains(l.Message, "mde.offboard.working.>") {
				return true
			}
		}
		return false
	})
}
