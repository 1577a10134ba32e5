package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// withdrawnWithin bounds how long a cancelled campaign's run may take to
// end after the cancel: far less than the quota or budget window its
// requests wait for, so that a run that ends only once the window frees
// fails.
const withdrawnWithin = 30 * time.Second

// runCampaign writes a CSV of every device of the environment as
// NAME.csv and runs the campaign in the background; the returned channel
// gives the run's exit code.
func runCampaign(t *testing.T, e *testEnv, name string) <-chan int {
	t.Helper()
	dir := t.TempDir()
	b := idsCSV(e.machines)
	p := writeFile(t, dir, name+".csv", b)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	done := make(chan int, 1)
	go func() {
		code, _, errOut := e.ctl(ctx, "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv"))
		if code != exitOK {
			t.Logf("campaign run: exit %d: %s", code, errOut)
		}
		done <- code
	}()
	return done
}

// cancelAndWait cancels the campaign and waits for its run to end, every
// row answered: each request not created is answered cancelled, with no
// API call after the cancel.
func cancelAndWait(t *testing.T, e *testEnv, name string, done <-chan int) {
	t.Helper()
	actions := len(e.sim.Actions(e.tenantID))
	start := time.Now()
	if code, out, errOut := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", name, "--reason", "stop"); code != exitOK {
		t.Fatalf("cancel: exit %d: %s %s", code, out, errOut)
	}
	select {
	case code := <-done:
		t.Logf("the run ended %v after the cancel", time.Since(start).Round(time.Millisecond))
		if code != exitOK {
			t.Errorf("campaign run: exit %d", code)
		}
	case <-time.After(withdrawnWithin):
		t.Fatalf("%v after the cancel: %d of %d rows answered, %d requests still in the stream",
			withdrawnWithin, len(e.results()), len(e.machines), e.requestsWaiting())
	}
	if n := len(e.sim.Actions(e.tenantID)); n != actions {
		t.Errorf("%d actions after the cancel, %d before", n, actions)
	}
	per := map[string]int{}
	created, cancelled := 0, 0
	for _, r := range e.results() {
		per[r.RequestID]++
		switch {
		case r.Outcome == offboard.OutcomeCreated:
			created++
		case r.Error != nil && r.Error.Code == offboard.CodeCancelled:
			cancelled++
		default:
			t.Errorf("%s: %s %+v", r.RequestID, r.Outcome, r.Error)
		}
	}
	if len(per) != len(e.machines) || created+cancelled != len(e.machines) || created != actions {
		t.Errorf("%d requests answered, %d results: %d created (%d actions), %d cancelled; want each of %d once",
			len(per), created+cancelled, created, actions, cancelled, len(e.machines))
	}
	code, out, _ := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", name, "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status: exit %d, %v: %s", code, err, out)
	}
	if st.Created != created || st.FailedByCode[offboard.CodeCancelled] != cancelled || st.Waiting != 0 {
		t.Errorf("status %+v; the results: %d created, %d cancelled", st, created, cancelled)
	}
}

// A campaign whose requests wait in the stream for the tenant's quota
// (10 calls an hour) is cancelled after its first 10 calls: the rest are
// answered cancelled at once, without a call, not when the quota frees.
func TestCancelWhileWaitingForQuota(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 40, 0, "10/1h")
	e.startWorker()
	done := runCampaign(t, e, "slow")
	e.waitFor("10 results", time.Minute, func() bool { return len(e.results()) >= 10 })
	cancelAndWait(t, e, "slow", done)
}

// A campaign held by the tenant's budget (5 a day) is cancelled: its held
// requests, in the stream or fetched already and waiting in the worker
// for a budget slot, are answered cancelled at once (they need neither a
// call nor a slot), not when the budget's window frees.
func TestCancelWhileHeldByBudget(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 20, 5)
	done := runCampaign(t, e, "held")
	e.waitFor("5 results", time.Minute, func() bool { return len(e.results()) >= 5 })
	cancelAndWait(t, e, "held", done)
}

// waitBudgetLeft waits until the worker's budget left for the tenant
// (mde_offboard_budget_remaining) is left: the budget set is in force.
func (e *testEnv) waitBudgetLeft(left float64) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, err := e.opts.Registry.Gather()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "mde_offboard_budget_remaining" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetGauge().GetValue() == left {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the worker's budget left is not %v within 10s", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Budget 2/24h and 10 rows: 2 actions are created, 8 wait for the budget
// (in the stream or fetched already, in flight), so the last is created
// after 4 more budget windows, 96 h. status, campaign run's progress and
// campaign status each say so, not the quota's seconds.
func TestBudgetETA(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 10, 2)
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	// Interrupted once its rows are published and its ETA is the
	// budget's, whenever the machine's load lets that come.
	res := runUntilLine(t, e.url, "published 10 (before 0); ETA 9", "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv"),
		"--progress-every", "1ms")
	if res.code != exitFailed || !strings.Contains(res.out, "; ETA 9") || !strings.Contains(res.out, "h00m (budget)") || strings.Contains(res.out, "ETA 0s") {
		t.Errorf("campaign run held by the budget: exit %d, stdout %q, stderr %q", res.code, res.out, res.err)
	}
	e.waitFor("2 results", time.Minute, func() bool { return len(e.results()) >= 2 })

	// A slot's end reaches the budget journal a moment after its result:
	// meanwhile it counts under way, and status reads one window less.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, out, _ := e.ctl(t.Context(), "status", tenant, "--json")
		var sts []tenantStatus
		if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 || sts[0].ETA == nil {
			t.Fatalf("status: %v %s", err, out)
		}
		st := sts[0]
		if *st.ETA/3600 >= 95 && *st.ETA/3600 <= 96 && st.ETAByBudget {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status ETA %.1fh (by budget %v; in flight %d, backlog %v), want about 96h", *st.ETA/3600, st.ETAByBudget, st.InFlight, st.Backlog)
		}
	}

	_, out, _ := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Waiting != 8 || st.ETASeconds == nil || *st.ETASeconds/3600 < 95 || *st.ETASeconds/3600 > 96 ||
		!strings.HasSuffix(st.ETA, " (budget)") {
		t.Errorf("campaign status held by the budget: %v %s", err, out)
	}
}

// budgetedEnv is a worker over machines devices with a quota that never
// holds them, and a budget override of count a day, all of it left.
func budgetedEnv(t *testing.T, machines, count int) *testEnv {
	t.Helper()
	e := newEnvLimited(t, machines, 0, "1000000/1m")
	e.startWorker()
	if code, out, errOut := e.ctl(t.Context(), "budget", tenant, fmt.Sprintf("%d/24h", count), "--reason", "test"); code != exitOK {
		t.Fatalf("budget: exit %d: %s %s", code, out, errOut)
	}
	e.waitBudgetLeft(float64(count))
	return e
}

// TestRunOfACancelledCampaignPublishesNothing: a run that reads its
// campaign's cancel mark publishes no more rows (here the mark was there
// before the run, so none): a row with a source of its own published after
// the cancel would not be withdrawn by the worker. Each row is reported
// failed with code cancelled, and no call goes out.
func TestRunOfACancelledCampaignPublishesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, tenant, "inc", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past campaign.ClockMargin (2 s)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "inc.csv", "machineId,source\n"+e.machines[0].ID+",\n"+e.machines[1].ID+",cmdb:CHG0012345\n")
	report := filepath.Join(dir, "r.csv")
	seq := e.lastSeq()
	ctx, cancel := context.WithTimeout(t.Context(), withdrawnWithin)
	defer cancel()
	code, out, errOut := e.ctl(ctx, "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", report)
	if code != exitOK {
		t.Fatalf("run: exit %d: %s %s", code, out, errOut)
	}
	if s := e.lastSeq(); s != seq {
		t.Errorf("the request stream moved from %d to %d: rows of a cancelled campaign published", seq, s)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("report:\n%s", b)
	}
	for _, l := range lines[1:] {
		if f := strings.Split(l, ","); len(f) < 6 || f[4] != offboard.OutcomeFailed || f[5] != offboard.CodeCancelled {
			t.Errorf("report line %q, want failed cancelled", l)
		}
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}

// A cancel that cannot read the tenant's requests and results (here: the
// results stream is not there) cannot tell a campaign from a typo: it
// fails with the read error, one line, exit 1, and marks nothing, where
// it marked the name blindly.
func TestCancelWhenTheRequestsCannotBeRead(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Request(tenant, offboard.Bulk), []byte(`{"requestId":"wave-000001"}`)); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), offboard.StreamResults); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", tenant, "--name", "wave", "--reason", "test")
	if code != exitFailed || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 ||
		!strings.Contains(errs, "cannot tell whether any request carries it") || !strings.Contains(errs, "nothing cancelled") {
		t.Errorf("cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	kv, err := campaign.ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := campaign.GetMark(t.Context(), kv, tenant, "wave"); err != nil || m != nil {
		t.Errorf("mark %+v (%v), want none", m, err)
	}
}

// TestCancelOverAMarkWrittenByHand: a campaign key holding a value
// written by hand that is no mark (the workers do not take it as a
// cancel) does not stop campaign cancel or campaign status: the cancel
// writes its mark over it and the campaign is cancelled. The cancel
// failed on the value, exit 1, and the campaign's rows went on.
func TestCancelOverAMarkWrittenByHand(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	body := `{"requestId":"wave-000001","machineId":"1e5bc9d7e413ddd7902c2932e418702b84d0cc07","source":"campaign:wave"}`
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Request(tenant, offboard.Bulk), []byte(body), jetstream.WithMsgID(tenant+":wave-000001")); err != nil {
		t.Fatal(err)
	}
	kv, err := campaign.ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), campaign.Key(tenant, "wave"), []byte(`cancelled`)); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := ctl(t, url, "campaign", "status", "--tenant", tenant, "--name", "wave"); code != exitOK || !strings.Contains(out, "waiting    1") {
		t.Errorf("status: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", tenant, "--name", "wave", "--reason", "test"); code != exitOK || !strings.Contains(out, "cancelled: 1 request waiting") {
		t.Errorf("cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	e, err := kv.Get(t.Context(), campaign.Key(tenant, "wave"))
	if err != nil || !campaign.IsCancel(e) {
		t.Errorf("mark %v, want a cancel", err)
	}
}
