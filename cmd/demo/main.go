// Command demo runs the worker's main job end to end on this machine: an
// embedded NATS server, the Defender simulator, the worker, and a sample
// batch of requests for two tenants, printing each result as it arrives.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func main() { os.Exit(run()) }

type demoTenant struct {
	name, tenantID, clientID, secret string
	machines                         []mdesim.Machine
}

// The demo's limits are the documented ones scaled down 60 times, so the
// pacing shows within seconds.
var demoWindows = []mdesim.Window{{Count: 5, Length: time.Second}, {Count: 25, Length: 10 * time.Second}}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "mde-offboard-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	sim := mdesim.New(mdesim.Options{Limits: map[string][]mdesim.Window{"offboard": demoWindows}})
	base := sim.StartTLS()
	defer sim.Close()

	tenants := []*demoTenant{
		{name: "contoso", tenantID: "11111111-2222-3333-4444-555555555555", clientID: "66666666-7777-8888-9999-000000000000"},
		{name: "fabrikam", tenantID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", clientID: "ffffffff-0000-1111-2222-333333333333"},
	}
	var yaml strings.Builder
	yaml.WriteString("tenants:\n")
	for ti, t := range tenants {
		t.secret = fmt.Sprintf("demo-secret-%d-%d", ti, time.Now().UnixNano())
		sim.AddTenant(mdesim.Tenant{TenantID: t.tenantID, ClientID: t.clientID, ClientSecret: t.secret})
		for i := range 30 {
			m := mdesim.Machine{
				ID:              fmt.Sprintf("%02x%038x", ti+1, i+1),
				ComputerDNSName: fmt.Sprintf("pc-%04d.%s.local", i, t.name),
				OSPlatform:      "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-48 * time.Hour),
			}
			if i == 29 {
				m.OSPlatform = "Linux"
			}
			sim.AddMachine(t.tenantID, m)
			t.machines = append(t.machines, m)
		}
		secretFile := filepath.Join(dir, t.name+".secret")
		if err := os.WriteFile(secretFile, []byte(t.secret), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&yaml, "  - name: %s\n    tenantId: %s\n    clientId: %s\n    clientSecretFile: %s\n"+
			"    apiBaseURL: %s\n    authorityHost: %s\n    comment: \"Retired in CMDB ({{.Source}}), request {{.RequestID}}\"\n"+
			"    limits:\n      offboard: [\"5/1s\", \"25/10s\"]\n",
			t.name, t.tenantID, t.clientID, secretFile, base, base)
	}
	// A re-imaged device: two records share a name.
	sim.AddMachine(tenants[0].tenantID, mdesim.Machine{ID: strings.Repeat("ab", 20), ComputerDNSName: "pc-0003.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Now().Add(-90 * 24 * time.Hour)})

	f, err := config.Parse([]byte(yaml.String()))
	if err != nil {
		return err
	}
	logCfg := zap.NewProductionConfig()
	logCfg.Encoding = "console"
	logCfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	logCfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	log, err := logCfg.Build()
	if err != nil {
		return err
	}
	a, err := app.New(app.Options{
		Tenants: f, DataDir: filepath.Join(dir, "nats"), EmbeddedListen: "127.0.0.1:-1", Listen: "127.0.0.1:0",
		Logger: log,
		HTTPClient: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, // every tenant's calls under way
			TLSClientConfig:     &tls.Config{RootCAs: sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
	})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(sctx)
	}()
	fmt.Printf("simulator   %s\nNATS        %s (embedded, JetStream)\nmetrics     http://%s/metrics\nlimits      offboard 5/1s and 25/10s per tenant (the real 100/1m and 1500/1h, 60x faster)\n\n",
		base, a.NATSURL(), a.HTTPAddr())

	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// Print results as they arrive.
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tTENANT\tREQUEST\tOUTCOME\tDEVICE\tACTION / ERROR")
	_ = w.Flush()
	var (
		mu       sync.Mutex
		outcomes = map[string]int{}
		seen     int
		done     = make(chan struct{})
	)
	batch := sample(tenants)
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, "MDE_OFFBOARD_RESULTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mde.offboard.result.>"}})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r offboard.Result
		if json.Unmarshal(m.Data(), &r) != nil {
			return
		}
		detail := ""
		switch {
		case r.Error != nil:
			detail = r.Error.Code + ": " + short(r.Error.Message, 70)
		case len(r.MachineAction) > 0:
			var act struct{ ID, Status string }
			_ = json.Unmarshal(r.MachineAction, &act)
			detail = act.ID + " " + act.Status
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%5.1fs\t%s\t%s\t%s\t%s\t%s\n", time.Since(start).Seconds(), r.Tenant, orDash(r.RequestID), r.Outcome, short(orDash(r.MachineID), 12), detail)
		_ = w.Flush()
		key := r.Outcome
		if r.Error != nil {
			key += " (" + r.Error.Code + ")"
		}
		outcomes[key]++
		seen++
		if seen == batch.results {
			close(done)
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()

	for _, p := range batch.msgs {
		m := nats.NewMsg(p.subject)
		m.Data = []byte(p.body)
		if p.msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, p.msgID)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	fmt.Printf("published %d requests (%d distinct, one a duplicate), waiting for %d results\n\n", len(batch.msgs), batch.results, batch.results)

	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("only %d of %d results after 2 minutes", seen, batch.results)
	case <-ctx.Done():
		return ctx.Err()
	}
	elapsed := time.Since(start)

	fmt.Printf("\nSummary after %.1fs\n", elapsed.Seconds())
	mu.Lock()
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %-36s %d\n", k, outcomes[k])
	}
	mu.Unlock()
	calls := map[string]int{}
	for _, c := range sim.Calls() {
		calls[c.API]++
	}
	fmt.Printf("  API calls seen by the simulator      offboard %d, machines %d, machineactions %d\n",
		calls["offboard"], calls["machines"], calls["machineactions"])
	for _, t := range tenants {
		fmt.Printf("  %-8s busiest windows               ", t.name)
		for _, win := range demoWindows {
			fmt.Printf("%d/%d in %v  ", sim.MaxInWindow(t.tenantID, "offboard", win), win.Count, win.Length)
		}
		fmt.Printf("429s for full windows: %d\n", sim.ThrottledCount(t.tenantID, "offboard"))
	}
	return nil
}

type pub struct{ subject, body, msgID string }

type sampleBatch struct {
	msgs    []pub
	results int
}

// sample builds the demo batch: CMDB events by id and by name, a bulk
// campaign, a dry run, a duplicate, a device on an unsupported OS, an
// ambiguous name, a bad request and a request for an unconfigured tenant.
func sample(tenants []*demoTenant) sampleBatch {
	var b sampleBatch
	add := func(subject, body, msgID string, result bool) {
		b.msgs = append(b.msgs, pub{subject, body, msgID})
		if result {
			b.results++
		}
	}
	req := func(id, field, value, extra string) string {
		return fmt.Sprintf(`{"requestId":%q,%q:%q,"requestedBy":"cmdb-sync","source":"servicenow:CHG%s"%s}`, id, field, value, id[len(id)-4:], extra)
	}
	for _, t := range tenants {
		normal := "mde.offboard.request." + t.name
		bulk := normal + ".bulk"
		// A bulk campaign first: normal requests published after it still go first.
		for i := 10; i < 28; i++ {
			id := fmt.Sprintf("%s-campaign-%04d", t.name, i)
			add(bulk, req(id, "machineId", t.machines[i].ID, ""), id, true)
		}
		for i := range 3 {
			id := fmt.Sprintf("%s-cmdb-%04d", t.name, i)
			add(normal, req(id, "machineId", t.machines[i].ID, ""), id, true)
		}
		id := t.name + "-byname-0004"
		add(normal, req(id, "computerDnsName", t.machines[4].ComputerDNSName, ""), id, true)
		id = t.name + "-dryrun-0005"
		add(normal, req(id, "machineId", t.machines[5].ID, `,"dryRun":true`), id, true)
		id = t.name + "-linux-0029"
		add(normal, req(id, "machineId", t.machines[29].ID, ""), id, true)
	}
	// The same CMDB event delivered twice under another message id: one action.
	add("mde.offboard.request.contoso", req("contoso-cmdb-0000", "machineId", tenants[0].machines[0].ID, ""), "contoso-cmdb-0000-retry", false)
	add("mde.offboard.request.contoso", req("contoso-byname-0003", "computerDnsName", "pc-0003.contoso.local", ""), "contoso-byname-0003", true)
	add("mde.offboard.request.contoso", `{"requestId":"contoso-bad-0001","machineId":"../../machines/1"}`, "contoso-bad-0001", true)
	add("mde.offboard.request.northwind", req("northwind-0001", "machineId", strings.Repeat("0", 40), ""), "northwind-0001", true)
	return b
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
