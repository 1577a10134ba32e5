package worker

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// forbiddenLooks answers its first n looks with the API's 403 for an
// application without Machine.Read.All.
func forbiddenLooks(clock clockwork.Clock, n int) *firstLooks {
	return &firstLooks{scriptedActions: scriptedFor(clock, "Succeeded"), n: n, first: func(p *limiter.Permit) *mde.Verdict {
		p.Complete(clock.Now())
		h := http.Header{"Content-Type": []string{"application/json"}}
		body := `{"error":{"code":"Forbidden","message":"Missing application roles. API required roles: Machine.Read.All, Machine.ReadWrite.All","target":"6c0ad9a2-8f0e-4a4e-9d3b-2f4c1d0b7e11"}}`
		return mde.Classify(http.StatusForbidden, h, []byte(body), clock.Now())
	}}
}

// TestTrackingSaysOnceThatReadsAreForbidden: an application with
// Machine.Offboard alone gets 403 at every look at its followed actions.
// The tracker says so once, at warning, naming the permission, and once
// more when a read works again; not once per look. Before, it said
// nothing above debug: no status change was ever published, and nothing
// in the log told why.
func TestTrackingSaysOnceThatReadsAreForbidden(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	core, logs := observer.New(zapcore.InfoLevel)
	_, js := natstest.Connect(t)
	log := &eventLog{}
	const forbidden = 4
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: forbiddenLooks(clock, forbidden), clock: clock, log: zap.New(core),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, tr)
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return evs[len(evs)-1].Final
	})

	var said, again []observer.LoggedEntry
	for _, e := range logs.All() {
		switch {
		case strings.Contains(e.Message, "Machine.Read.All"):
			said = append(said, e)
		case strings.Contains(e.Message, "actions can be read again"):
			again = append(again, e)
		}
	}
	t.Logf("%d looks answered 403: %d lines naming the permission, %d saying reads work again", forbidden, len(said), len(again))
	if len(said) != 1 {
		t.Fatalf("%d lines naming Machine.Read.All for %d looks answered 403, want 1", len(said), forbidden)
	}
	if said[0].Level != zapcore.WarnLevel {
		t.Errorf("logged at %v, want warn", said[0].Level)
	}
	if len(again) != 1 || again[0].Level != zapcore.InfoLevel {
		t.Errorf("lines saying the reads work again: %v, want one at info", again)
	}
	for _, e := range append(said, again...) {
		text := e.Message + " " + fmt.Sprint(e.ContextMap())
		if strings.Contains(strings.ToLower(text), "bearer") || strings.Contains(text, "eyJ") {
			t.Errorf("line carries what looks like a token: %s", text)
		}
	}
}
