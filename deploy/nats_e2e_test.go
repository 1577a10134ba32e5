package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The users of deploy/nats/accounts.conf, their passwords' variables,
// their accounts and the inbox prefixes the file lets each of them read
// (empty: the client's default, _INBOX, in an account of its own).
var accountUsers = map[string]struct{ passwordEnv, account, inbox string }{
	"mde-offboard-worker": {"MDE_OFFBOARD_WORKER_PASSWORD", "MDE", "_INBOX_worker"},
	"offboardctl":         {"OFFBOARDCTL_PASSWORD", "MDE", "_INBOX_offboardctl"},
	"contoso-cmdb":        {"CONTOSO_CMDB_PASSWORD", "CONTOSO_CMDB", ""},
	"contoso-gov-cmdb":    {"CONTOSO_GOV_CMDB_PASSWORD", "CONTOSO_GOV_CMDB", ""},
}

// publishers is the publishers of deploy/nats/accounts.conf and their
// tenants.
var publishers = map[string]string{"contoso-cmdb": "contoso", "contoso-gov-cmdb": "contoso-gov"}

// violations collects the server's permission violations.
type violations struct {
	mu    sync.Mutex
	lines []string
}

func (v *violations) add(format string, a ...any) {
	if line := fmt.Sprintf(format, a...); strings.Contains(line, "Violation") {
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.mu.Unlock()
	}
}

// of is the violations of user.
func (v *violations) of(user string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, l := range v.lines {
		if strings.Contains(l, "/user:"+user+`"`) {
			out = append(out, l)
		}
	}
	return out
}

func (v *violations) Noticef(string, ...any)         {}
func (v *violations) Debugf(string, ...any)          {}
func (v *violations) Tracef(string, ...any)          {}
func (v *violations) Warnf(format string, a ...any)  { v.add(format, a...) }
func (v *violations) Errorf(format string, a ...any) { v.add(format, a...) }
func (v *violations) Fatalf(format string, a ...any) { v.add(format, a...) }

// startAccountsServer starts a NATS server with JetStream configured by
// deploy/nats/accounts.conf, and returns its host:port.
func startAccountsServer(t *testing.T) (string, *violations) {
	t.Helper()
	for user, u := range accountUsers {
		t.Setenv(u.passwordEnv, user+"-password")
	}
	opts, err := server.ProcessConfigFile("nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &violations{}
	s.SetLogger(v, false, false)
	t.Cleanup(func() {
		if t.Failed() {
			v.mu.Lock()
			defer v.mu.Unlock()
			for _, l := range v.lines {
				t.Log("server:", l)
			}
		}
	})
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return strings.TrimPrefix(s.ClientURL(), "nats://"), v
}

// userURL is the server's URL with user's name and password.
func userURL(hostPort, user string) string {
	return "nats://" + url.UserPassword(user, user+"-password").String() + "@" + hostPort
}

// TestNATSAccountsEndToEnd runs the worker, a tenant's publisher and
// offboardctl against a NATS server configured by deploy/nats/accounts.conf,
// each as its user with its inbox prefix: the worker starts and answers
// requests and plans (one through the plans bucket), follows an action
// to its final status (checkTracking), offboardctl's
// commands work, and no other refusal of theirs is logged. The publisher
// can neither publish for another tenant nor read another user's replies,
// nor have its acknowledgements sent anywhere but to its own account
// (checkReflectedReplies); offboardctl cannot touch the worker's durable
// consumers, streams, journals or ledger, nor the worker publish a control
// change (checkOperatorRefusals).
func TestNATSAccountsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds offboardctl and runs the worker")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build offboardctl")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// offboardctl is built while the rest starts.
	ctl := filepath.Join(dir, "offboardctl")
	built := make(chan error, 1)
	go func() {
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", ctl, "../cmd/offboardctl").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build: %w: %s", err, out)
		}
		built <- err
	}()

	hostPort, viol := startAccountsServer(t)
	sim, tenantID, stale, linux := startSimulator(t)
	startWorker(t, hostPort, sim, tenantID, dir)

	// The publisher, in an account of its own: its request goes through
	// the import to the stream, is answered, and its acknowledgement comes
	// back.
	cmdb := connectAs(t, hostPort, "contoso-cmdb")
	js, err := jetstream.New(cmdb.nc)
	if err != nil {
		t.Fatal(err)
	}
	first := offboard.Request{RequestID: "chg-1", MachineID: stale[0].ID, RequestedBy: "cmdb"}
	if _, err := offboard.Publish(ctx, js, offboard.Subjects{}, "contoso", offboard.Normal, first); err != nil {
		t.Fatalf("contoso-cmdb: %v", err)
	}
	// No such device: a dead letter for dead ls and dead retry. Bulk: the
	// account imports both request subjects.
	if _, err := offboard.Publish(ctx, js, offboard.Subjects{}, "contoso", offboard.Bulk,
		offboard.Request{RequestID: "chg-2", MachineID: strings.Repeat("f", 40), RequestedBy: "cmdb"}); err != nil {
		t.Fatalf("contoso-cmdb: %v", err)
	}
	for _, subject := range []string{
		"mde.offboard.request.contoso-gov", "mde.offboard.request.contoso.x", "mde.offboard.quota.contoso",
		"mde.offboard.control.contoso", "$KV.MDE_OFFBOARD_CONTROL.pause.contoso.normal",
		"$JS.API.STREAM.PURGE.MDE_OFFBOARD_REQUESTS", "$JS.API.INFO",
	} {
		cmdb.refused(t, "publish", subject, func() error {
			return cmdb.nc.Publish(subject, []byte(`{"requestId":"x","machineId":"`+stale[1].ID+`"}`))
		})
	}
	for _, subject := range []string{"_INBOX_worker.>", "_INBOX_offboardctl.>", "mde.offboard.>", ">"} {
		cmdb.refused(t, "subscription", subject, func() error {
			_, err := cmdb.nc.SubscribeSync(subject)
			return err
		})
	}
	waitFor(ctx, t, "the request's action", func() bool { return len(sim.Actions(tenantID)) == 1 })
	checkTracking(ctx, t, hostPort, sim, tenantID)
	checkReflectedReplies(ctx, t, hostPort, cmdb, first)
	checkPublishersApart(ctx, t, hostPort, cmdb)

	if err := <-built; err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		// A minute: the plan of 20,000 devices under -race on a loaded
		// machine took longer than 15 s.
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, ctl, args...)
		cmd.Env = append(os.Environ(),
			"MDE_OFFBOARD_NATS_URL="+userURL(hostPort, "offboardctl"),
			"MDE_OFFBOARD_NATS_INBOX_PREFIX="+accountUsers["offboardctl"].inbox)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("offboardctl %s: %v: %s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	if out := run("status"); !strings.Contains(out, "contoso") {
		t.Errorf("status: %s", out)
	}
	// offboardctl's user reads the presence bucket: status knows the
	// worker that serves the tenant.
	if out := run("status", "contoso", "--json"); !strings.Contains(out, `"lastAnnounced"`) || strings.Contains(out, `"noWorker"`) {
		t.Errorf("status --json does not show the worker serving contoso: %s", out)
	}
	run("pause", "contoso", "--priority", "bulk", "--reason", "test")
	run("resume", "contoso", "--reason", "test")
	run("budget", "contoso", "50/24h")
	// The worker answers a guards request on offboardctl's inbox.
	if out := run("guards", "contoso"); !strings.Contains(out, "(agree)") || !strings.Contains(out, "budget override            50/24h") {
		t.Errorf("guards: %s", out)
	}
	if out := run("dead", "ls", "contoso"); !strings.Contains(out, "chg-2") {
		t.Errorf("dead ls: %s", out)
	}
	if out := run("results", "contoso", "--request-id", "chg-2"); !strings.Contains(out, "chg-2") {
		t.Errorf("results: %s", out)
	}
	if out := run("dead", "retry", "contoso", "--all"); !strings.Contains(out, "retried chg-2 attempt 2") {
		t.Errorf("dead retry: %s", out)
	}

	// A plan: the stale devices come through the plans bucket, which
	// offboardctl empties; the one Linux device in the reply.
	big := filepath.Join(dir, "stale.csv")
	run("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", big)
	if rows := readRows(t, big); len(rows)-1 != len(stale)+1 {
		t.Errorf("plan: %d devices, want %d", len(rows)-1, len(stale)+1)
	}
	checkPlansBucket(ctx, t, hostPort)
	small := filepath.Join(dir, "linux.csv")
	run("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--os", "Linux", "--out", small)
	if rows := readRows(t, small); len(rows) != 2 || rows[1][0] != linux.ID {
		t.Errorf("Linux plan: %v", rows)
	}

	// A campaign of three devices.
	camp := filepath.Join(dir, "wave1.csv")
	var b strings.Builder
	b.WriteString("machineId,computerDnsName\n")
	for _, m := range stale[1:4] {
		fmt.Fprintf(&b, "%s,%s\n", m.ID, m.ComputerDNSName)
	}
	if err := os.WriteFile(camp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run("campaign", "run", "--tenant", "contoso", "--csv", camp, "--report", filepath.Join(dir, "report.csv"), "--timeout", "10s")
	if rows := readRows(t, filepath.Join(dir, "report.csv")); len(rows) != 4 || rows[1][4] != offboard.OutcomeCreated {
		t.Errorf("campaign report: %v", rows)
	}
	if out := run("campaign", "status", "--tenant", "contoso", "--name", "wave1"); !strings.Contains(out, "wave1") {
		t.Errorf("campaign status: %s", out)
	}
	run("campaign", "cancel", "--tenant", "contoso", "--name", "wave1", "--reason", "test")

	// What offboardctl and the worker may not do; any other refusal of
	// theirs is a grant missing.
	ctlTried, workerTried := checkOperatorRefusals(t, hostPort)
	for user, c := range map[string]*client{"mde-offboard-worker": workerTried, "offboardctl": ctlTried} {
		for _, l := range viol.of(user) {
			if !c.tried(l) {
				t.Errorf("%s: %s", user, l)
			}
		}
	}
}

// staleDevices is the Windows devices unseen for 100 days: their plan's
// CSV (about 2 MB) is larger than a reply may carry, and than what a
// JetStream consumer sends before it waits for flow control (1 MB).
const staleDevices = 20000

// startSimulator starts the API simulator with tenant contoso:
// staleDevices Windows devices and a Linux one unseen for 100 days, and
// 9 recent ones.
func startSimulator(t *testing.T) (sim *mdesim.Server, tenantID string, stale []mdesim.Machine, linux mdesim.Machine) {
	t.Helper()
	sim = mdesim.New(mdesim.Options{Unlimited: true})
	tenantID = "11111111-2222-3333-4444-555555555555"
	sim.AddTenant(mdesim.Tenant{TenantID: tenantID, ClientID: "66666666-7777-8888-9999-000000000000", ClientSecret: "accounts-test-secret"})
	now := time.Now()
	for i := range 50 + staleDevices - 40 {
		m := mdesim.Machine{ID: fmt.Sprintf("%040x", i+1), ComputerDNSName: fmt.Sprintf("pc-%04d.contoso.local", i),
			OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: now.Add(-100*24*time.Hour - time.Duration(i)*time.Minute)}
		switch {
		case i == 40:
			m.OSPlatform, m.ComputerDNSName = "Linux", "nix-0040.contoso.local"
			linux = m
		case i > 40 && i < 50:
			m.HealthStatus, m.LastSeen = "Active", now.Add(-time.Hour)
		default:
			stale = append(stale, m)
		}
		sim.AddMachine(tenantID, m)
	}
	return sim, tenantID, stale, linux
}

// startWorker starts the worker in-process as mde-offboard-worker.
func startWorker(t *testing.T, hostPort string, sim *mdesim.Server, tenantID, dir string) {
	t.Helper()
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	secret := filepath.Join(dir, "contoso.secret")
	if err := os.WriteFile(secret, []byte("accounts-test-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(fmt.Appendf(nil, `tenants:
  - name: contoso
    tenantId: %s
    clientId: 66666666-7777-8888-9999-000000000000
    clientSecretFile: %s
    apiBaseURL: %s
    authorityHost: %s
    limits:
      offboard: ["1000/1m"]
      machines: ["1000/1m"]
      machineactions: ["1000/1m"]
    tracking:
      enabled: true
      firstCheck: 300ms
      maxInterval: 300ms
`, tenantID, secret, base, base))
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(app.Options{
		Tenants: f, NATSURL: userURL(hostPort, "mde-offboard-worker"),
		NATSInboxPrefix: accountUsers["mde-offboard-worker"].inbox,
		Listen:          "127.0.0.1:0", Registry: prometheus.NewRegistry(),
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		HTTPClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
		Retry: worker.RetryPolicy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Poll:  100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := a.Start(sctx); err != nil {
		t.Fatalf("worker start: %v", err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
}

// client is a connection as one user, with its inbox prefix, that
// collects the server's refusals.
type client struct {
	nc      *nats.Conn
	errs    chan error
	refuses []string // the subjects refused checked
}

func connectAs(t *testing.T, hostPort, user string) *client {
	t.Helper()
	c := &client{errs: make(chan error, 16)}
	opts := []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case c.errs <- err:
		default:
		}
	})}
	if inbox := accountUsers[user].inbox; inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(userURL(hostPort, user), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// refused does what and checks the server refuses it: a permissions
// violation for a publish or subscription on subject.
func (c *client) refused(t *testing.T, kind, subject string, what func() error) {
	t.Helper()
	c.refuses = append(c.refuses, subject)
	if err := what(); err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(strings.ToLower(err.Error()), fmt.Sprintf("%s to %q", kind, strings.ToLower(subject))) {
			t.Errorf("%s on %s: %v, want a permissions violation", kind, subject, err)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("%s on %s: allowed", kind, subject)
	}
}

// tried says whether a server's violation line is about a subject
// refused checked.
func (c *client) tried(line string) bool {
	return slices.ContainsFunc(c.refuses, func(s string) bool { return strings.Contains(line, fmt.Sprintf("Subject %q", s)) })
}

// checkTracking finishes the first request's action and checks, as
// offboardctl, that the worker, which follows it in the ledger, published
// its final status on the action subject.
func checkTracking(ctx context.Context, t *testing.T, hostPort string, sim *mdesim.Server, tenantID string) {
	t.Helper()
	action := sim.Actions(tenantID)[0]
	if !sim.SetActionStatus(tenantID, action.ID, "Succeeded") {
		t.Fatalf("no action %s", action.ID)
	}
	ctl := connectAs(t, hostPort, "offboardctl")
	js, err := jetstream.New(ctl.nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{offboard.Subjects{}.Action("contoso")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("the action's final status: %v", err)
		}
		var ev struct {
			ActionID string `json:"actionId"`
			Status   string `json:"status"`
			Final    bool   `json:"final"`
		}
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.ActionID == action.ID && ev.Final {
			if ev.Status != "Succeeded" {
				t.Errorf("final status %s, want Succeeded", ev.Status)
			}
			return
		}
	}
}

// checkPlansBucket checks, as offboardctl, that a plan went through the
// plans bucket and was deleted once fetched.
func checkPlansBucket(ctx context.Context, t *testing.T, hostPort string) {
	t.Helper()
	ctl := connectAs(t, hostPort, "offboardctl")
	js, err := jetstream.New(ctl.nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := js.ObjectStore(ctx, offboard.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	status, err := store.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info := status.(*jetstream.ObjectBucketStatus).StreamInfo(); info.State.LastSeq == 0 {
		t.Error("the plan did not go through the plans bucket")
	}
	if infos, err := store.List(ctx); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Errorf("plans bucket after the plan was fetched: %d objects (%v)", len(infos), err)
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readRows(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return slices.Clip(rows)
}
