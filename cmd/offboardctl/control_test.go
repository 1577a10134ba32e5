package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// natsWithStreams starts a NATS server with the worker's streams for
// contoso and fabrikam, as a worker would have set them up, and returns
// its URL.
func natsWithStreams(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso", "fabrikam"}, Limits: map[string]string{"contoso": "10/1m0s,100/1h0m0s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	return nc.ConnectedUrl(), js
}

// waitPending waits until the tenant's consumers count the requests
// published: the server counts a consumer's pending messages a moment
// after it stored them, and a busy machine makes that moment longer.
func waitPending(t *testing.T, js jetstream.JetStream, tenant string, want map[offboard.Priority]uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p, n := range want {
		for {
			c, err := js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName(tenant, p))
			if err != nil {
				t.Fatal(err)
			}
			if c.CachedInfo().NumPending >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's %s consumer counts %d pending, want %d", tenant, p, c.CachedInfo().NumPending, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func ctl(t *testing.T, url string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"--nats-url", url}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// pause writes the control and publishes its event with who and why;
// status shows the pause and the backlog, in a table and in JSON.
func TestPauseStatusResume(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	for range 3 {
		if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso.bulk", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitPending(t, js, "contoso", map[offboard.Priority]uint64{offboard.Normal: 3, offboard.Bulk: 1})
	if code, out, errs := ctl(t, url, "pause", "contoso", "--reason", "CAB-42", "--as", "alice"); code != exitOK || !strings.Contains(out, "paused contoso (all)") {
		t.Fatalf("pause: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	stream, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(t.Context(), "mde.offboard.control.contoso")
	if err != nil {
		t.Fatal(err)
	}
	var ev control.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Action != "pause" || ev.Priority != "all" || ev.By != "alice" || ev.Reason != "CAB-42" || ev.At.IsZero() {
		t.Errorf("event %+v", ev)
	}

	code, out, errs := ctl(t, url, "status")
	t.Logf("status:\n%s", out)
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"TENANT", "contoso   all", "normal 3, bulk 1", "10/10 per 1m, 100/100 per 1h", "paused by alice", "CAB-42", "fabrikam"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}

	code, out, _ = ctl(t, url, "status", "contoso", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); code != exitOK || err != nil || len(sts) != 1 {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	st := sts[0]
	if !st.Paused[offboard.Normal] || !st.Paused[offboard.Bulk] || st.Backlog[offboard.Normal] != 3 || st.Backlog[offboard.Bulk] != 1 ||
		st.Held != 4 || st.ETA != nil || st.OldestWaiting[offboard.Normal].IsZero() || st.Budget.Used != nil {
		t.Errorf("status %s", out)
	}

	if code, _, errs := ctl(t, url, "resume", "contoso", "--priority", "bulk"); code != exitOK {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	if code, _, errs := ctl(t, url, "budget", "contoso", "50/24h"); code != exitOK {
		t.Fatalf("budget: exit %d: %s", code, errs)
	}
	_, out, _ = ctl(t, url, "status", "contoso", "--json")
	sts = nil
	_ = json.Unmarshal([]byte(out), &sts)
	if st := sts[0]; !st.Paused[offboard.Normal] || st.Paused[offboard.Bulk] || st.Budget.Override != "50/24h" || st.ETA == nil ||
		st.Budget.Used == nil || *st.Budget.Used != 0 || *st.Budget.Left != 50 {
		t.Errorf("after resuming bulk and setting the budget: %s", out)
	}

	// Three slots reserved in the budget journal: one created, one given
	// back, one under way. Used counts the first and the last.
	now := time.Now()
	for _, ev := range []limiter.Event{
		{Writer: "w1", Reserved: []limiter.Call{{API: "created", ID: 1, At: now.Add(time.Hour).UnixNano()}, {API: "created", ID: 2, At: now.Add(time.Hour).UnixNano()}, {API: "created", ID: 3, At: now.Add(time.Hour).UnixNano()}}},
		{Writer: "w1", Done: []limiter.Call{{API: "created", ID: 1, At: now.UnixNano()}, {API: "created", ID: 2}}},
	} {
		data, _ := json.Marshal(ev)
		if _, err := js.Publish(t.Context(), "mde.offboard.budget.contoso", data); err != nil {
			t.Fatal(err)
		}
	}
	_, out, _ = ctl(t, url, "status", "contoso")
	if !strings.Contains(out, "50/24h (override), used 2, left 48") {
		t.Errorf("status after two slots counted:\n%s", out)
	}

	// With those two slots the whole of a 2/24h budget, the request
	// waiting is held for a day: the ETA says so, not "now".
	if code, _, errs := ctl(t, url, "budget", "contoso", "2/24h"); code != exitOK {
		t.Fatalf("budget 2/24h: exit %d: %s", code, errs)
	}
	_, out, _ = ctl(t, url, "status", "contoso", "--json")
	sts = nil
	_ = json.Unmarshal([]byte(out), &sts)
	if st := sts[0]; st.ETA == nil || *st.ETA < (23*time.Hour).Seconds() || *st.ETA > (24*time.Hour).Seconds() || !st.ETAByBudget {
		t.Errorf("ETA with the budget spent: %s", out)
	}
	_, out, _ = ctl(t, url, "status", "contoso")
	if !strings.Contains(out, "(budget)") || !strings.Contains(out, "24h00m (budget)") {
		t.Errorf("status with the budget spent:\n%s", out)
	}
}

// A tenant no worker has set up (a typo) is refused: nothing changes,
// where a pause of it would have said "paused" and held nothing.
// --unknown-tenant changes it all the same.
func TestControlOfAnUnknownTenant(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	for _, args := range [][]string{{"pause", "contosso"}, {"resume", "contosso"}, {"budget", "contosso", "5/1h"}} {
		code, out, errs := ctl(t, url, args...)
		if code != exitFailed || out != "" || !strings.Contains(errs, "tenant contosso: no worker has set up its consumers") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	view := storedControls(t, js)
	if view.Paused("contosso", offboard.Normal) {
		t.Error("the unknown tenant was paused")
	}
	if code, out, errs := ctl(t, url, "pause", "contosso", "--unknown-tenant"); code != exitOK || !strings.Contains(out, "paused contosso") {
		t.Errorf("pause --unknown-tenant: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := ctl(t, url, "pause", "fabrikam"); code != exitOK {
		t.Errorf("pause of a known tenant: exit %d, %q", code, errs)
	}
}

// Bad usage is exit 2 and one line; NATS unreachable is exit 1 and one
// line naming the URL.
func TestControlBadUsage(t *testing.T) {
	t.Parallel()
	url, _ := natsWithStreams(t)
	for _, args := range [][]string{
		{"pause", "Contoso"}, {"pause", "con.toso"}, {"pause"}, {"pause", "contoso", "--priority", "urgent"},
		{"resume", "contoso", "extra"}, {"budget", "contoso"}, {"budget", "contoso", "0/1h"}, {"budget", "contoso", "10/forever"},
		{"budget", "contoso", "10/1h", "--clear"}, {"status", "-x"}, {"status", "UPPER"},
		{"pause", "contoso", "--reason", "ok\ncontoso: normal paused by admin 1s ago: approved"},
		{"pause", "contoso", "--as", ""}, {"pause", "contoso", "--as", "  "}, {"resume", "contoso", "--as", "eve\x1b[2J"},
		{"budget", "contoso", "10/1h", "--reason", "a\rb"}, {"budget", "contoso", "--clear", "--as", "a\tb"},
		{"pause", "contoso", "--reason", "a\u2028b"}, {"pause", "contoso", "--reason", "\xff"},
		{"pause", "contoso", "--reason", "ok \u202eevil"}, {"pause", "contoso", "--as", "\u2066bob"},
		{"pause", "contoso", "--as", "\u200b"}, {"pause", "contoso", "--as", "\ufeff"}, {"pause", "contoso", "--as", "bo\u200bb"},
		{"pause", "contoso", "--as", "\U000e0062\U000e006f"}, {"pause", "contoso", "--as", "\u00ad"},
		{"pause", "contoso", "--as", "ops\u3164"}, {"pause", "contoso", "--as", "\u3164"}, {"pause", "contoso", "--as", "a\u034fdmin"},
		{"pause", "contoso", "--reason", "approved\u3164"}, {"pause", "contoso", "--reason", "CHG1 \ufe0f"},
	} {
		code, _, errs := ctl(t, url, args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
	if code, out, errs := ctl(t, url, "pause", "fabrikam", "--as", "Zoë", "--reason", "CHG 42 – ok ✓"); code != exitOK || !strings.Contains(out, "by Zoë (CHG 42 – ok ✓)") {
		t.Errorf("pause with text beyond ASCII: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// Emoji sequences and scripts joined by zero-width (non-)joiners.
	for _, reason := range []string{"👨\u200d💻 maintenance", "🏳️\u200d🌈 test", "Persian نمی\u200cخواهم"} {
		if code, _, errs := ctl(t, url, "resume", "fabrikam", "--reason", reason); code != exitOK {
			t.Errorf("--reason %q: exit %d, stderr %q", reason, code, errs)
		}
	}
	// Names written with them: a Persian surname with its non-joiner, a
	// Sinhala one with the joiner of its conjunct, a Japanese one with
	// its ideograph's variation selector.
	for _, as := range []string{"\u062d\u0633\u06cc\u0646\u200c\u0632\u0627\u062f\u0647", "\u0dc1\u0dca\u200d\u0dbb\u0dd3\u0db8\u0dcf\u0dbd\u0dd2", "\u845b\U000e0100\u57ce"} {
		if code, out, errs := ctl(t, url, "resume", "fabrikam", "--as", as); code != exitOK || !strings.Contains(out, as) {
			t.Errorf("--as %q: exit %d, stdout %q, stderr %q", as, code, out, errs)
		}
	}
	code, _, errs := ctl(t, "nats://127.0.0.1:1", "status")
	if code != exitFailed || !strings.Contains(errs, "nats://127.0.0.1:1") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("unreachable: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := ctl(t, url, "status", "nosuch"); code != exitFailed {
		t.Errorf("unknown tenant: exit %d, stderr %q", code, errs)
	}
}

// The ETA follows the windows: 3000 calls at 100/1m + 1500/1h take 74
// minutes (1500 in the first 14, then the hour), 150 take one minute and
// a half.
func TestETA(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	ws := limiter.Default()
	for n, want := range map[int]time.Duration{0: 0, 100: 0, 101: time.Minute, 3000: 74 * time.Minute} {
		if got := eta(ws, nil, n, now); got != want {
			t.Errorf("eta(%d) = %v, want %v", n, got, want)
		}
	}
	past := []time.Time{now.Add(-30 * time.Second)}
	if left := callsLeft(ws, past, now); left[0] != 99 || left[1] != 1499 {
		t.Errorf("left %v", left)
	}
}

// A budget whose window the budget journal (48 h by default) cannot count
// is refused, naming the longest allowed; one stored anyway is shown as
// ignored, as the worker ignores it.
func TestBudgetLongerThanTheJournal(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	code, _, errs := ctl(t, url, "budget", "contoso", "10/46h")
	if code != exitUsage || !strings.Contains(errs, "45h59m59.5s") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("budget 10/46h: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := ctl(t, url, "budget", "contoso", "10/45h"); code != exitOK {
		t.Fatalf("budget 10/45h: exit %d, stderr %q", code, errs)
	}
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionBudget, Value: "10/47h", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	_, out, _ := ctl(t, url, "status", "contoso")
	if !strings.Contains(out, "none (override 10/47h ignored)") || !strings.Contains(out, "contoso: budget override 10/47h ignored by the worker") {
		t.Errorf("status with an override the worker ignores:\n%s", out)
	}
	_, out, _ = ctl(t, url, "status", "contoso", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	if b := sts[0].Budget; b.InForce != "" || b.Override != "10/47h" || b.Ignored == "" || b.Used != nil {
		t.Errorf("budget %+v", b)
	}
}

// A budget that is no budget is refused as bad usage, in one line that
// says what is accepted, and nothing is stored.
func TestBudgetRefused(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	const (
		form     = "budget: a budget is written <count>/<duration>, like 500/24h"
		count    = "budget: a budget's count must be a positive whole number, like the 500 of 500/24h"
		duration = "budget: a budget's duration must be a positive Go duration, like the 24h of 500/24h or 90m; a day is 24h"
	)
	for _, tc := range []struct{ in, want string }{
		// Windows too short to count anything: a slip of the unit.
		{"1/1ns", "budget: a budget's duration must be at least 1s, like the 24h of 500/24h"},
		{"5/1ms", "at least 1s"},
		{"5/999ms", "at least 1s"},
		{"", form}, {" ", form}, {"500", form}, {"500/24h/1", form}, {"500/24h/", form}, {"/", count},
		{"0/24h", count}, {"-1/24h", count}, {"-5", form}, {"٥/1h", count}, {"５/1h", count}, {"5 /1h", count}, {"1e3/1h", count},
		{"99999999999999999999/24h", "budget: a budget's count must be at most 10000000"},
		{"9223372036854775807/1s", "budget: a budget's count must be at most 10000000"},
		{"500/0s", duration}, {"500/-1h", duration}, {"500/24", duration}, {"500/1d", duration}, {"5/１h", duration},
		{"5/ 1h", duration}, {"5/1h\u200b", duration}, {"5/9999999999h", duration},
		// Longer than the budget journal (48h by default) can count.
		{"500/48h", "budget 500/48h: the worker would ignore it: the longest window it counts is 45h59m59.5s"},
	} {
		code, out, errs := ctl(t, url, "budget", "contoso", tc.in)
		if code != exitUsage || out != "" || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("budget %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.in, code, out, errs, tc.want)
		}
	}
	view := storedControls(t, js)
	if e, ok := view.Budget("contoso"); ok {
		t.Errorf("a refused budget was stored: %+v", e)
	}
}

// A budget is stored one way only, as status, the audit event and the
// worker's logs show it: a plain one as typed, an odd spelling of it as
// the plain one.
func TestBudgetStoredOneWay(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	stream, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{"500/24h", "500/24h"}, {"5/90m", "5/1h30m"}, {"1/1h30m", "1/1h30m"},
		{"+5/1h", "5/1h"}, {"05/1h", "5/1h"}, {" 5/1h", "5/1h"}, {"5/60m", "5/1h"}, {"5/3600s", "5/1h"},
		{"5/1h0m0s", "5/1h"}, {"5/+1h", "5/1h"}, {"5/1.h", "5/1h"}, {"5/.5h", "5/30m"}, {"007/24h", "7/24h"},
	} {
		code, out, errs := ctl(t, url, "budget", "contoso", tc.in)
		if code != exitOK || !strings.Contains(out, "budget of contoso set to "+tc.want+";") {
			t.Errorf("budget %q: exit %d, stdout %q, stderr %q; want it set to %s", tc.in, code, out, errs, tc.want)
			continue
		}
		_, out, _ = ctl(t, url, "status", "contoso", "--json")
		var sts []tenantStatus
		if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 || sts[0].Budget.Override != tc.want || sts[0].Budget.InForce != tc.want {
			t.Errorf("budget %q: status %v %s; want %s", tc.in, err, out, tc.want)
		}
		m, err := stream.GetLastMsgForSubject(t.Context(), "mde.offboard.control.contoso")
		if err != nil {
			t.Fatal(err)
		}
		var ev control.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Value != tc.want {
			t.Errorf("budget %q: event %v %s; want the value %s", tc.in, err, m.Data, tc.want)
		}
	}
}

// TestFileBudgetShownOneWay: the tenants file's budget, as the worker
// records it in its consumers (Go's 500/24h0m0s), is shown as an override
// is stored: 500/24h, in the table and in JSON.
func TestFileBudgetShownOneWay(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Budgets: map[string]string{"contoso": "500/24h0m0s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	_, out, _ := ctl(t, nc.ConnectedUrl(), "status", "contoso", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 || sts[0].Budget.InForce != "500/24h" {
		t.Errorf("status --json: %v %s; want the budget in force 500/24h", err, out)
	}
	if _, out, _ = ctl(t, nc.ConnectedUrl(), "status", "contoso"); !strings.Contains(out, "file 500/24h,") {
		t.Errorf("status: %s; want file 500/24h", out)
	}
}

// A budget given with white space around it (a newline from a script's
// echo, a tab) is stored as it was read: status shows it on one line.
func TestBudgetWithSpaceAround(t *testing.T) {
	t.Parallel()
	url, _ := natsWithStreams(t)
	code, out, errs := ctl(t, url, "budget", "contoso", "\t50/24h\n")
	if code != exitOK || !strings.Contains(out, "budget of contoso set to 50/24h;") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("budget: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	_, out, _ = ctl(t, url, "status", "contoso", "--json")
	var sts []tenantStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 || sts[0].Budget.Override != "50/24h" || sts[0].Budget.InForce != "50/24h" {
		t.Errorf("status: %v %s", err, out)
	}
}

// TestStatusShowsEntriesWrittenByHandPrintable: control and campaign
// entries written by hand (offboardctl refuses such --as and --reason)
// with a line break or a terminal escape in who, why or the budget are
// shown escaped by status, campaign status and campaign cancel: they
// forged lines ("contoso: bulk paused by mallory") and could redraw the
// operator's screen.
func TestStatusShowsEntriesWrittenByHandPrintable(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	const forged = "x\\ncontoso: bulk paused by mallory\\u001b[2J"
	for key, value := range map[string]string{
		control.PauseKey("contoso", offboard.Normal): `{"paused":true,"by":"` + forged + `","reason":"` + forged + `"}`,
		control.BudgetKey("contoso"):                 `{"value":"` + forged + `","by":"cron"}`,
		campaign.Key("contoso", "wave"):              `{"cancelled":true,"by":"` + forged + `","reason":"` + forged + `","at":"2026-01-01T00:00:00Z"}`,
	} {
		if _, err := kv.Put(t.Context(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Request("contoso", offboard.Bulk), []byte(`{}`), jetstream.WithMsgID("contoso:wave-000001")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "contoso"},
		{"campaign", "status", "--tenant", "contoso", "--name", "wave"},
		{"campaign", "cancel", "--tenant", "contoso", "--name", "wave"},
	} {
		code, out, errs := ctl(t, url, args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d, stderr %q", args, code, errs)
		}
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, "contoso: bulk") || strings.Contains(line, "\x1b") {
				t.Errorf("%q: line %q forged by an entry", args, line)
			}
		}
	}
}

// storedControls reads the controls stored in the control bucket.
func storedControls(t *testing.T, js jetstream.JetStream) *control.View {
	t.Helper()
	store, err := control.Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	view, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return view
}

// TestControlReasonTooLong: a --reason or --as longer than a line of
// status can show (a file pasted in, a runaway variable) is bad usage,
// and nothing is written; one at the bound is taken.
func TestControlReasonTooLong(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	for _, args := range [][]string{
		{"pause", "contoso", "--reason", strings.Repeat("x", 10<<10)},
		{"pause", "contoso", "--reason", strings.Repeat("é", maxReason+1)},
		{"budget", "contoso", "5/1h", "--as", strings.Repeat("a", maxAs+1)},
	} {
		code, out, errs := ctl(t, url, args...)
		if code != exitUsage || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 || len(errs) > 200 {
			t.Errorf("%.40q: exit %d, stdout %.80q, stderr %.200q", args, code, out, errs)
		}
	}
	if v := storedControls(t, js); v.Paused("contoso", offboard.Normal) {
		t.Error("contoso paused by a refused command")
	}
	if code, _, errs := ctl(t, url, "pause", "contoso", "--reason", strings.Repeat("é", maxReason), "--as", strings.Repeat("a", maxAs)); code != exitOK {
		t.Errorf("pause with --reason and --as at their bounds: exit %d, stderr %.200q", code, errs)
	}
}

// TestStatusPauseTimeFromAnotherClock: a pause written from a host whose
// clock is ahead of this one, or by hand without its time, is not shown
// with a negative age or an age of centuries: status says when, or that
// the time is not known.
func TestStatusPauseTimeFromAnotherClock(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339)
	for key, value := range map[string]string{
		control.PauseKey("contoso", offboard.Normal): `{"paused":true,"by":"alice","at":"` + ahead + `"}`,
		control.PauseKey("contoso", offboard.Bulk):   `{"paused":true,"by":"cron"}`,
	} {
		if _, err := kv.Put(t.Context(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := ctl(t, url, "status", "contoso")
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "contoso: ") && (strings.Contains(line, " -") || strings.Contains(line, "2562047h")) {
			t.Errorf("line %q", line)
		}
	}
	if !strings.Contains(out, "contoso: normal paused by alice at "+ahead) || !strings.Contains(out, "contoso: bulk paused by cron at a time not known") {
		t.Errorf("status:\n%s", out)
	}
}

// TestStatusShowsEveryEntryByHandPrintable: what an entry written by hand
// holds reaches the terminal printable in both of status's forms. A
// budget written with a carriage return before it ("\r5/1h" reads as
// 5/1h) was shown as it is, and its row then overwrote the tenant's
// name and PAUSED column; --json showed a C1 control (U+009B, which some
// terminals take for an escape) or a bidirectional override as they are,
// where dead ls --json escapes them.
func TestStatusShowsEveryEntryByHandPrintable(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{
		control.PauseKey("contoso", offboard.Normal): `{"paused":true,"by":"eve\u009b2J","reason":"\u202eCAB-7"}`,
		control.BudgetKey("contoso"):                 `{"value":"\r5/1h","by":"cron"}`,
	} {
		if _, err := kv.Put(t.Context(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"status", "contoso"}, {"status", "--json"}} {
		code, out, errs := ctl(t, url, args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d, stderr %q", args, code, errs)
		}
		if strings.ContainsAny(out, "\r\u009b\u202e") {
			t.Errorf("%q shows an entry's control character as it is:\n%q", args, out)
		}
	}
}

// TestStatusDoesNotQuoteAnOverrideThatIsNoBudget: a budget entry written
// by hand whose value is no budget (a secret pasted in the wrong window,
// say), or that is no JSON at all, is shown as not a budget or as
// unreadable, in both of status's forms, as the worker logs it: never
// quoted.
func TestStatusDoesNotQuoteAnOverrideThatIsNoBudget(t *testing.T) {
	t.Parallel()
	const pasted = "Xq8~s3cr3t.Value_of_a_client"
	for entry, shown := range map[string]string{
		`{"value":"` + pasted + `","by":"cron"}`: "(not a budget)",
		pasted:                                   control.UnreadableBudget,
	} {
		url, js := natsWithStreams(t)
		kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), control.BudgetKey("contoso"), []byte(entry)); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"status", "contoso"}, {"status", "--json"}} {
			code, out, errs := ctl(t, url, args...)
			if code != exitOK {
				t.Fatalf("%q: exit %d, stderr %q", args, code, errs)
			}
			if strings.Contains(out, "s3cr3t") || !strings.Contains(out, shown) {
				t.Errorf("%q of %s quotes an override that is no budget, or does not show it as %s:\n%s", args, entry, shown, out)
			}
		}
	}
}

// A resume of one priority under a pause of the other (a pause of all,
// then a resume of bulk) said "waiting requests go on", while the other
// priority's stay held. It names what stays paused, and how to resume it.
func TestResumeOfOnePrioritySaysWhatStaysPaused(t *testing.T) {
	t.Parallel()
	url, _ := natsWithStreams(t)
	if code, _, errs := ctl(t, url, "pause", "contoso"); code != exitOK {
		t.Fatalf("pause: exit %d, stderr %q", code, errs)
	}
	code, out, errs := ctl(t, url, "resume", "contoso", "--priority", "bulk")
	want := "resumed contoso (bulk): waiting requests go on; normal stays paused (offboardctl resume contoso --priority normal); by "
	if code != exitOK || !strings.HasPrefix(out, want) {
		t.Errorf("resume of bulk under a pause of all: exit %d, stdout %q, want it to start %q; stderr %q", code, out, want, errs)
	}
	code, out, errs = ctl(t, url, "resume", "contoso", "--priority", "normal")
	if want := "resumed contoso (normal): waiting requests go on; by "; code != exitOK || !strings.HasPrefix(out, want) {
		t.Errorf("resume of the last paused priority: exit %d, stdout %q, want it to start %q; stderr %q", code, out, want, errs)
	}
}

// TestBudgetClearSaysWhatApplies: budget --clear says which budget the
// tenant goes back to: the tenants file's, named, or none when the file
// sets none. It said "the tenants file's budget applies" for a tenant
// whose file sets none, left without a cap.
func TestBudgetClearSaysWhatApplies(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	// As a worker sets them up: the limits of every tenant, the budget
	// of those whose file sets one.
	s := queue.Settings{Tenants: []string{"contoso", "fabrikam"}, Budgets: map[string]string{"contoso": "500/24h0m0s"},
		Limits: map[string]string{"contoso": "100/1m0s,1500/1h0m0s", "fabrikam": "100/1m0s,1500/1h0m0s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ tenant, want string }{
		{"contoso", "budget override of contoso cleared: the tenants file's budget applies, 500/24h;"},
		{"fabrikam", "budget override of fabrikam cleared: the tenants file sets no budget, so none applies;"},
	} {
		if code, out, errs := ctl(t, nc.ConnectedUrl(), "budget", tc.tenant, "5/1h"); code != exitOK {
			t.Fatalf("budget %s 5/1h: exit %d, stdout %q, stderr %q", tc.tenant, code, out, errs)
		}
		code, out, errs := ctl(t, nc.ConnectedUrl(), "budget", tc.tenant, "--clear")
		if code != exitOK || !strings.Contains(out, tc.want) {
			t.Errorf("budget %s --clear: exit %d, stdout %q, stderr %q; want %q", tc.tenant, code, out, errs, tc.want)
		}
	}
}
