package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A run interrupted while it reads what the streams hold of the
// campaign, before it publishes, says so on one line: nothing published,
// no report written, and the same command starts it. It said
// "context canceled", which told the operator neither.
func TestCampaignRunInterruptedBeforePublishingSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	e.stopWorker()
	ctx, interrupt := context.WithCancelCause(t.Context())
	// The interrupt lands as the run starts reading the request stream.
	sub, err := e.js.Conn().Subscribe("$JS.API.CONSUMER.CREATE."+offboard.StreamRequests+".>", func(*nats.Msg) {
		interrupt(errors.New("interrupt signal received"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	e.wantStoppedBeforePublishing(ctx, t, "wave")
}

// wantStoppedBeforePublishing runs campaign name with ctx, interrupted
// before it publishes, and wants its one line saying so, no report and
// nothing published.
func (e *testEnv) wantStoppedBeforePublishing(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	dir := t.TempDir()
	p := writeFile(t, dir, name+".csv", idsCSV(e.machines))
	report := filepath.Join(dir, "r.csv")
	code, out, errs := e.ctl(ctx, "campaign", "run", "--tenant", tenant, "--csv", p, "--report", report)
	want := "offboardctl: campaign " + name + ": stopped before publishing (interrupt signal received): nothing published, no report written; run the same command again\n"
	if code != exitFailed || errs != want {
		t.Errorf("campaign run: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", code, out, errs, exitFailed, want)
	}
	if _, err := os.Stat(report); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("report: %v; want none written", err)
	}
	if n := e.requestsWaiting(); n != 0 {
		t.Errorf("%d requests published", n)
	}
}

// A run interrupted before it connects to NATS (while it reads a large
// CSV, say) says it stopped before publishing, as it does once connected:
// it said "connect to NATS at URL: context canceled", which read as a
// connection that failed, and told neither that nothing was published nor
// to run the same command again.
func TestCampaignRunInterruptedBeforeConnectingSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	e.stopWorker()
	ctx, interrupt := context.WithCancelCause(t.Context())
	interrupt(errors.New("interrupt signal received"))
	e.wantStoppedBeforePublishing(ctx, t, "early")
}
