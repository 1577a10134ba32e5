package main

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A dead letter retried whose retry still waits in the request stream (a
// tenant paused over a weekend, a budget spent) is not retried again:
// the same retry, published once more, was dropped as a repeat only
// within the stream's duplicate window, and stored a second time after
// it, to be worked on twice.
func TestDeadRetryAgainWhileItsRetryWaits(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Duplicates: 500 * time.Millisecond}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	url := nc.ConnectedUrl()
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"x-1","machineId":"`+a+`"}`)
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitOK || !strings.Contains(out, "retried x-1 attempt 2") || lastRequestSeq(t, js) != 1 {
		t.Fatalf("first retry: exit %d, %d requests stored, stdout %q, stderr %q", code, lastRequestSeq(t, js), out, errs)
	}
	time.Sleep(time.Second) // the duplicate window passes
	// Another request id's dead letter, stored since, is retried beside it.
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"y-1","machineId":"`+b+`"}`)
	code, out, errs = ctl(t, url, "dead", "retry", "contoso", "--all")
	if n := lastRequestSeq(t, js); n != 2 {
		t.Errorf("second retry: %d requests stored, want 2 (y-1's retry, not x-1's again)", n)
	}
	if code != exitOK || !strings.Contains(out, "x-1 attempt 2 was retried before") || !strings.Contains(out, "retried y-1 attempt 2") ||
		!strings.Contains(out, "1 retried, 1 retried before") {
		t.Errorf("second retry: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestDeadRetryBehindAPauseSaysToResume: retries published to a paused
// priority wait behind the pause, unanswered: dead retry says so and how
// to let them go, as campaign cancel does. It said only "retried", and
// no result came.
func TestDeadRetryBehindAPauseSaysToResume(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"x-1","machineId":"`+a+`"}`, `{"requestId":"y-1","machineId":"`+b+`"}`)
	if code, out, errs := ctl(t, url, "pause", "contoso", "--priority", "normal"); code != exitOK {
		t.Fatalf("pause: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	want := "2 of them wait behind the pause of contoso's normal requests: offboardctl resume contoso --priority normal lets them go"
	if code != exitOK || !strings.Contains(out, "2 retried") || !strings.Contains(out, want) {
		t.Errorf("dead retry while paused: exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
	if code, out, errs := ctl(t, url, "resume", "contoso"); code != exitOK {
		t.Fatalf("resume: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// Again, not paused: the retries wait in the stream still (no worker
	// here), and nothing is said of a pause.
	code, out, errs = ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitOK || !strings.Contains(out, "2 retried before") || strings.Contains(out, "pause") {
		t.Errorf("dead retry after the resume: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestDeadRetryBehindASpentBudgetSaysSo: dead retry of a tenant whose
// budget is spent says how many of its retries the budget holds and how
// to let them go, as it does for a pause: the worker takes none of the
// tenant's requests until a slot frees, a day later here, and they
// waited with nothing said but "retried".
func TestDeadRetryBehindASpentBudgetSaysSo(t *testing.T) {
	t.Parallel()
	e := budgetedEnv(t, 3, 1)
	// With a slot left, nothing is said: the retry takes it.
	publishDead(t, e.js, offboard.CodeAPIError, `{"requestId":"spend-1","machineId":"`+e.machines[0].ID+`"}`)
	code, out, errs := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "1 retried") || strings.Contains(out, "budget") {
		t.Errorf("dead retry with a slot of the budget left: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	e.waitFor("the retry's action", time.Minute, func() bool { return len(e.results()) == 1 })
	e.waitBudgetLeft(0)

	publishDead(t, e.js, offboard.CodeAPIError, `{"requestId":"held-1","machineId":"`+e.machines[1].ID+`"}`)
	code, out, errs = e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	want := "1 of them waits for contoso's budget (1/24h, 0 left): offboardctl budget contoso COUNT/WINDOW raises it"
	if code != exitOK || !strings.Contains(out, "retried held-1 attempt 2") || !strings.Contains(out, want) {
		t.Errorf("dead retry with the budget spent: exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
}
