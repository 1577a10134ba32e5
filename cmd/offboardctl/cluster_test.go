package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignRunRepublishesWhatALostLeaderTook: on three clustered
// servers, the request stream's leader is shut down while a campaign run
// publishes through another server, and restarted 2 s later. The
// publishes the leader had taken but not stored get no answer: the run
// publishes them again, under the same message ids, and every row is
// answered, once, exit 0. Before, they were counted not published once
// their acknowledgements had been awaited 30 s, the publishing stalled
// meanwhile, and the run ended, exit 1, telling to run it again.
func TestCampaignRunRepublishesWhatALostLeaderTook(t *testing.T) {
	t.Parallel()
	clusterCampaignRun(t, func(leader int) (via, lost int) { return (leader + 1) % 3, leader })
}

// TestCampaignRunWhoseServerIsLost: as above, the server the run was
// given (the only URL: it learns the others from it) shut down
// mid-publish, the request stream led by another.
func TestCampaignRunWhoseServerIsLost(t *testing.T) {
	t.Parallel()
	clusterCampaignRun(t, func(leader int) (via, lost int) { return (leader + 1) % 3, (leader + 1) % 3 })
}

// clusterRunTimeout bounds a cluster test's campaign run: it only stops
// a run that hangs, and is not what the tests check. Nine servers, a
// worker and the run share the test process; under -race, with the
// package's other tests beside them on two busy cores, the worker
// answered 3-5 rows a second (45 alone) and runs of 500 rows took up to
// 72 s, so a bound of 25 s ended them, exit 1, with rows unanswered.
const clusterRunTimeout = "3m"

// clusterCampaignRun runs a campaign of 500 rows on three clustered
// servers, through server via, and shuts server lost down once a fifth
// of the rows are published, restarting it 2 s later (choose picks them
// from the request stream's leader). Every row must be answered once,
// exit 0.
func clusterCampaignRun(t *testing.T, choose func(leader int) (via, lost int)) {
	t.Helper()
	const rows = 500
	e, c, csvPath, report := clusterCampaign(t, rows)
	leader := c.StreamLeader(t.Context(), e.js, offboard.StreamRequests)
	via, lost := choose(leader)
	before := lastRequestSeq(t, e.js)
	start := time.Now()
	// A few publishes awaited at a time: the server is lost mid-publish.
	done := runInBackground(t.Context(), "--nats-url", serverURL(c, via), "campaign", "run", "--tenant", tenant,
		"--csv", csvPath, "--report", report, "--progress-every", "1h", "--timeout", clusterRunTimeout, "--max-pending", "16")
	waitRun(t, "requests stored", rows/5, done, func() (uint64, error) {
		s, err := e.js.Stream(t.Context(), offboard.StreamRequests)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(t.Context())
		if err != nil {
			return 0, err
		}
		return info.State.LastSeq - before, nil
	})
	c.Shutdown(lost)
	lostAt := time.Since(start)
	time.Sleep(2 * time.Second)
	c.Restart(lost)
	r := <-done
	t.Logf("run via %s, request stream led by %s, %s shut down %v into it, back 2 s later; exit %d after %v: %s%s",
		c.Name(via), c.Name(leader), c.Name(lost), lostAt.Round(time.Millisecond), r.code, time.Since(start).Round(time.Millisecond), r.out, r.err)
	if r.code != exitOK || r.err != "" {
		t.Errorf("exit %d, want 0 and nothing on stderr: %q", r.code, r.err)
	}
	if !strings.Contains(r.out, "no result 0; published 500, published before 0, answered before 0") {
		t.Errorf("summary: %q", r.out)
	}
	checkClusterCampaign(t, e, report, rows)
}

// clusterCampaign starts three clustered servers and a worker with rows
// devices, and writes a campaign CSV of them: its path, and where its
// report goes.
func clusterCampaign(t *testing.T, rows int) (e *testEnv, c *natstest.Cluster, csvPath, report string) {
	t.Helper()
	e, c = newClusterEnv(t, rows)
	e.startWorker()
	dir := t.TempDir()
	return e, c, writeFile(t, dir, "wave.csv", idsCSV(e.machines)), filepath.Join(dir, "wave-report.csv")
}

// checkClusterCampaign checks that each of a campaign's rows is reported
// created, that one result answers each request id, and that each device
// has one action.
func checkClusterCampaign(t *testing.T, e *testEnv, report string, rows int) {
	t.Helper()
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil || len(recs) != rows+1 {
		t.Fatalf("report: %d lines, %v", len(recs), err)
	}
	for _, rec := range recs[1:] {
		if rec[4] != offboard.OutcomeCreated {
			t.Errorf("report: row %s: %q", rec[0], rec[4:7])
		}
	}
	ids := map[string]int{}
	for _, res := range e.results() {
		ids[res.RequestID]++
	}
	wantOnceEach(t, "results", "request ids", ids, rows)
	per := map[string]int{}
	for _, a := range e.sim.Actions(e.tenantID) {
		per[a.MachineID]++
	}
	wantOnceEach(t, "actions", "devices", per, rows)
}

// wantOnceEach checks that counts, what there is of each key (keys are
// what they are of), holds want keys, each counted once.
func wantOnceEach(t *testing.T, what, keys string, counts map[string]int, want int) {
	t.Helper()
	if len(counts) != want {
		t.Errorf("%s for %d %s, want %d", what, len(counts), keys, want)
	}
	for k, n := range counts {
		if n != 1 {
			t.Errorf("%s: %d %s", k, n, what)
		}
	}
}

// TestCampaignRunFollowsResultsPastALostServer: on three clustered
// servers, the server that holds a campaign run's reader of the results
// is shut down for good while the run waits, its own connection to
// another server holding. The run reads the results stored meanwhile
// within seconds of NATS having them all. Before, its reader was made
// again only after two missed heartbeats of 5 s: the progress stood
// still, and the run ended 5-8 s after the last result was stored.
func TestCampaignRunFollowsResultsPastALostServer(t *testing.T) {
	t.Parallel()
	const rows = 300
	e, c, csvPath, report := clusterCampaign(t, rows)
	// Paused while the run is started again until its reader is not on
	// the server it connects to (the server places it).
	if code, _, errs := e.ctl(t.Context(), "pause", tenant); code != exitOK {
		t.Fatalf("pause: %s", errs)
	}
	var (
		done      <-chan ran
		via, lost int
	)
	for try := 0; ; try++ {
		if try == 10 {
			t.Fatal("the run's reader of the results stays on the server it connects to")
		}
		via = try % 3
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done = runInBackground(ctx, "--nats-url", serverURL(c, via), "campaign", "run", "--tenant", tenant,
			"--csv", csvPath, "--report", report, "--progress-every", "1h", "--timeout", clusterRunTimeout)
		var ended *ran
		lost, ended = waitResultsReader(t, e, c, done)
		if ended != nil {
			// Ended before its reader was seen (a step timed out on a
			// busy machine): started again.
			t.Logf("try %d: the run ended, exit %d, before its reader of the results was seen: %s%s", try, ended.code, ended.out, ended.err)
			continue
		}
		if lost != via {
			break
		}
		cancel()
		<-done
	}
	start := time.Now()
	if code, _, errs := e.ctl(t.Context(), "resume", tenant); code != exitOK {
		t.Fatalf("resume: %s", errs)
	}
	results := func() (uint64, error) {
		subject := offboard.Subjects{}.Result(tenant)
		s, err := e.js.Stream(t.Context(), offboard.StreamResults)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
		if err != nil {
			return 0, err
		}
		return info.State.Subjects[subject], nil
	}
	waitRun(t, "results stored", rows/5, done, results)
	c.Shutdown(lost)
	lostAt := time.Since(start)
	// When every row's result is stored.
	allStored := make(chan time.Time, 1)
	go func() {
		for {
			if n, err := results(); err == nil && n >= rows {
				allStored <- time.Now()
				return
			}
			select {
			case <-t.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	r := <-done
	ended := time.Now()
	var stored time.Time
	select {
	case stored = <-allStored:
	case <-time.After(5 * time.Second):
		t.Fatalf("the rows were not all answered; exit %d: %s%s", r.code, r.out, r.err)
	}
	lag := ended.Sub(stored)
	t.Logf("run via %s, %s (its reader's) shut down %v after the resume; every row answered %v after it, the run ended %v later: exit %d: %s%s",
		c.Name(via), c.Name(lost), lostAt.Round(time.Millisecond), stored.Sub(start).Round(time.Millisecond), lag.Round(time.Millisecond), r.code, r.out, r.err)
	if r.code != exitOK || r.err != "" {
		t.Errorf("exit %d, want 0 and nothing on stderr: %q", r.code, r.err)
	}
	if lag > 4*time.Second {
		t.Errorf("the run ended %v after every row was answered", lag.Round(time.Millisecond))
	}
	checkClusterCampaign(t, e, report, rows)
}

// resultsReader is the server that holds the consumer reading the
// tenant's results (a campaign run's); -1 while there is none.
func resultsReader(t *testing.T, e *testEnv, c *natstest.Cluster) int {
	t.Helper()
	st, err := e.js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	subject := offboard.Subjects{}.Result(tenant)
	for ci := range st.ListConsumers(t.Context()).Info() {
		if (ci.Config.FilterSubject == subject || slices.Contains(ci.Config.FilterSubjects, subject)) && ci.Cluster != nil {
			return c.Index(ci.Cluster.Leader)
		}
	}
	return -1
}

// waitResultsReader waits for a campaign run's reader of the results to
// be made, and returns the server that leads it, or how the run ended if
// it ended first (done). It fails if neither comes within 30 s.
func waitResultsReader(t *testing.T, e *testEnv, c *natstest.Cluster, done <-chan ran) (int, *ran) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if lost := resultsReader(t, e, c); lost >= 0 {
			return lost, nil
		}
		select {
		case r := <-done:
			return -1, &r
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no reader of the results within 30 s of the run's start")
		}
	}
}

// waitRun waits for count, what a campaign run has done so far, to
// reach n. It fails if the run ends first, with what the run said, or if
// 30 s pass, with the stacks of the run's goroutines.
func waitRun(t *testing.T, what string, n uint64, done <-chan ran, count func() (uint64, error)) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var (
		got     uint64
		lastErr error
	)
	for {
		if got, lastErr = count(); lastErr == nil && got >= n {
			return
		}
		select {
		case r := <-done:
			t.Fatalf("the run ended, exit %d, with %d of %d %s: %s%s", r.code, got, n, what, r.out, r.err)
		case <-deadline:
			t.Fatalf("%d of %d %s within 30 s (last error %v); the run's goroutines:\n%s", got, n, what, lastErr, runStacks())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runStacks is the stacks of the goroutines running offboardctl's own
// code, not its tests'.
func runStacks() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var keep []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for line := range strings.SplitSeq(g, "\n") {
			if strings.Contains(line, "/cmd/offboardctl/") && !strings.Contains(line, "_test.go") {
				keep = append(keep, g)
				break
			}
		}
	}
	return strings.Join(keep, "\n\n")
}
