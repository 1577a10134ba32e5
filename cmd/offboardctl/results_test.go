package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestResultsListsWhoAskedForWhat: results lists the results a real
// worker stored, oldest first, and each filter keeps the results it names
// alone: a device by its id in any case, a device by its name in another
// case with a final dot, an outcome, a request id (in JSON, as stored).
// A text a publisher wrote with a terminal escape is shown escaped.
func TestResultsListsWhoAskedForWhat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	created, dry := e.machines[0], e.machines[1]
	for _, body := range []string{
		fmt.Sprintf(`{"requestId":"chg-1","machineId":"%s","requestedBy":"cmdb-sync","source":"servicenow:CHG1"}`, created.ID),
		fmt.Sprintf(`{"requestId":"try-1","computerDnsName":"%s","dryRun":true,"requestedBy":"alice"}`, dry.ComputerDNSName),
		`{"requestId":"gone-1","computerDnsName":"gone.contoso.local","requestedBy":"cmdb-sync"}`,
	} {
		var r struct{ RequestID string }
		_ = json.Unmarshal([]byte(body), &r)
		publishRaw(t, e.js, "mde.offboard.request.contoso", "contoso:"+r.RequestID, body)
	}
	e.waitFor("3 results", 30*time.Second, func() bool { return len(e.results()) == 3 })
	actions := e.sim.Actions(e.tenantID)
	if len(actions) != 1 {
		t.Fatalf("%d actions, want 1", len(actions))
	}

	rows := func(args ...string) []string {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), append([]string{"results", "contoso"}, args...)...)
		if code != exitOK {
			t.Fatalf("results %q: exit %d: %s", args, code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "STORED") {
			t.Fatalf("results %q: no header:\n%s", args, out)
		}
		return lines[1:]
	}
	all, stored := rows(), e.results() // in the stream's order
	if len(all) != len(stored) {
		t.Fatalf("every result:\n%s", strings.Join(all, "\n"))
	}
	for i, r := range stored {
		if !strings.Contains(all[i], " "+r.RequestID+" ") {
			t.Errorf("row %d is not %s, the stream's %d: every result, oldest first:\n%s", i+1, r.RequestID, i+1, strings.Join(all, "\n"))
		}
	}
	if r := rows("--machine-id", strings.ToUpper(created.ID)); len(r) != 1 || !strings.Contains(r[0], "created") ||
		!strings.Contains(r[0], actions[0].ID) || !strings.Contains(r[0], "cmdb-sync") || !strings.Contains(r[0], "servicenow:CHG1") {
		t.Errorf("--machine-id: %q, want the created result with its action, who asked and from where", r)
	}
	if r := rows("--name", strings.ToUpper(dry.ComputerDNSName)+"."); len(r) != 1 || !strings.Contains(r[0], "dry_run") || !strings.Contains(r[0], "alice") {
		t.Errorf("--name: %q, want the dry run", r)
	}
	if r := rows("--outcome", "failed", "--since", "1h"); len(r) != 1 || !strings.Contains(r[0], "machine_not_found") {
		t.Errorf("--outcome failed: %q, want the device not found", r)
	}
	if r := rows("--outcome", "already_pending"); len(r) != 0 {
		t.Errorf("--outcome already_pending: %q, want none", r)
	}

	code, out, errs := e.ctl(t.Context(), "results", "contoso", "--request-id", "chg-1", "--json")
	var got []offboard.Result
	if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil || len(got) != 1 || got[0].RequestID != "chg-1" || got[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("--request-id --json: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}

	publishRaw(t, e.js, "mde.offboard.result.contoso", "result:contoso:odd-1",
		`{"requestId":"odd-1","tenant":"contoso","outcome":"failed","source":"x\u001b[31my","error":{"code":"invalid_request","message":"m"}}`)
	if r := rows("--request-id", "odd-1"); len(r) != 1 || strings.Contains(r[0], "\x1b") || !strings.Contains(r[0], `x\x1b[31my`) {
		t.Errorf("a result's escape: %q, want it shown escaped", r)
	}
}

// TestResultsBadUsage: results answers bad usage with one line and exit
// 2, before it connects; a tenant no worker serves is told so, exit 1.
func TestResultsBadUsage(t *testing.T) {
	t.Parallel()
	url, _ := natsWithStreams(t)
	for _, args := range [][]string{
		{"results"},
		{"results", "contoso", "fabrikam"},
		{"results", "Contoso"},
		{"results", "contoso", "--machine-id", "123"},
		{"results", "contoso", "--request-id", "a b"},
		{"results", "contoso", "--outcome", "creatd"},
		{"results", "contoso", "--since", "-1h"},
		{"results", "contoso", "--since", "soon"},
		{"results", "contoso", "--since", "100000d"},
		{"results", "contoso", "--name", "pc\x1b[2J"},
		{"results", "contoso", "--name", "."},
		{"results", "contoso", "--name", "pc-1..contoso.local"},
		{"results", "contoso", "--name", "pc 1"},
	} {
		code, out, errs := ctl(t, "nats://127.0.0.1:1", args...)
		if code != exitUsage || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "\x1b") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and one line", args, code, out, errs, exitUsage)
		}
	}
	code, _, errs := ctl(t, url, "results", "nobody")
	if code != exitFailed || !strings.Contains(errs, "nobody") {
		t.Errorf("results of a tenant no worker serves: exit %d, stderr %q", code, errs)
	}
}
