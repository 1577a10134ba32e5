package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

type demoTenant struct {
	name, tenantID, clientID, secret string
	machines                         []mdesim.Machine
	guards                           string // the tenants file's guards entry, indented
}

// The demo's limits: small stand-ins for the documented 100/1m and
// 1500/1h, so the pacing shows within seconds. Both windows are far
// shorter than the real ones and hold far fewer calls: not one scale.
var demoWindows = []mdesim.Window{{Count: 5, Length: time.Second}, {Count: 25, Length: 10 * time.Second}}

// windowsText spells windows as the tenants file does ("5/1s").
func windowsText(windows []limiter.Window) []string {
	out := make([]string, len(windows))
	for i, w := range windows {
		out[i] = fmt.Sprintf("%d/%s", w.Count, w.Label())
	}
	return out
}

// demoLimits are demoWindows as the worker's limiter takes them.
func demoLimits() []limiter.Window {
	out := make([]limiter.Window, len(demoWindows))
	for i, w := range demoWindows {
		out[i] = limiter.Window{Count: w.Count, Length: w.Length}
	}
	return out
}

// limitsLine says what limits the demo's tenants have, and what they
// stand in for.
func limitsLine() string {
	return fmt.Sprintf("offboard %s per tenant (small stand-ins for the real %s, so the pacing shows in seconds)",
		strings.Join(windowsText(demoLimits()), " and "), strings.Join(windowsText(limiter.Default()), " and "))
}

// demoLimitsYAML is the tenants file's offboard limits: demoWindows.
func demoLimitsYAML() string {
	return `["` + strings.Join(windowsText(demoLimits()), `", "`) + `"]`
}

// env is the running demo: the simulator, its tenants and the worker.
type env struct {
	sim     *mdesim.Server
	base    string
	tenants []*demoTenant // those of the sample batch
	guarded *demoTenant   // the one of the guard, budget and pause parts
	app     *app.App
	reg     *prometheus.Registry // the worker's metrics
}

// start starts the simulator with two tenants of 30 devices each, a third
// with guards and a budget, and a worker serving them, keeping their files
// under dir.
func start(ctx context.Context, dir string) (*env, error) {
	e := &env{sim: mdesim.New(mdesim.Options{Limits: map[string][]mdesim.Window{"offboard": demoWindows}})}
	e.base = e.sim.StartTLS()
	e.tenants = []*demoTenant{
		{name: "contoso", tenantID: "11111111-2222-3333-4444-555555555555", clientID: "66666666-7777-8888-9999-000000000000"},
		{name: "fabrikam", tenantID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", clientID: "ffffffff-0000-1111-2222-333333333333"},
	}
	for ti, t := range e.tenants {
		t.machines = sampleMachines(ti, t.name)
	}
	// Two of contoso's stale devices must stay: the plan leaves them out.
	e.tenants[0].guards = fmt.Sprintf("      protect:\n        machineIds: [%q, %q]\n", staleMachine(0).ID, staleMachine(1).ID)
	e.guarded = guardedTenant()
	var yaml strings.Builder
	yaml.WriteString("tenants:\n")
	for ti, t := range append(slices.Clone(e.tenants), e.guarded) {
		if err := e.addTenant(&yaml, dir, ti, t); err != nil {
			e.sim.Close()
			return nil, err
		}
	}
	// A re-imaged device: two records share a name.
	e.sim.AddMachine(e.tenants[0].tenantID, mdesim.Machine{ID: strings.Repeat("ab", 20), ComputerDNSName: "pc-0003.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Now().Add(-90 * 24 * time.Hour)})
	// Devices gone quiet months ago, for the campaign.
	for i := range staleDevices {
		e.sim.AddMachine(e.tenants[0].tenantID, staleMachine(i))
	}

	var err error
	if e.app, err = e.startWorker(ctx, yaml.String(), dir); err != nil {
		e.sim.Close()
		return nil, err
	}
	return e, nil
}

// sampleMachines are the 30 devices of tenant number ti of the sample
// batch, seen two days ago; the last one runs Linux.
func sampleMachines(ti int, name string) []mdesim.Machine {
	var ms []mdesim.Machine
	for i := range 30 {
		m := mdesim.Machine{
			ID:              fmt.Sprintf("%02x%038x", ti+1, i+1),
			ComputerDNSName: fmt.Sprintf("pc-%04d.%s.local", i, name),
			OSPlatform:      "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-48 * time.Hour),
		}
		if i == 29 {
			m.OSPlatform = "Linux"
		}
		ms = append(ms, m)
	}
	return ms
}

// addTenant adds tenant number ti and its devices to the simulator, writes
// its secret file, and its entry of the tenants file to yaml.
func (e *env) addTenant(yaml *strings.Builder, dir string, ti int, t *demoTenant) error {
	t.secret = fmt.Sprintf("demo-secret-%d-%d", ti, time.Now().UnixNano())
	e.sim.AddTenant(mdesim.Tenant{TenantID: t.tenantID, ClientID: t.clientID, ClientSecret: t.secret})
	for _, m := range t.machines {
		e.sim.AddMachine(t.tenantID, m)
	}
	secretFile := filepath.Join(dir, t.name+".secret")
	if err := os.WriteFile(secretFile, []byte(t.secret), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(yaml, "  - name: %s\n    tenantId: %s\n    clientId: %s\n    clientSecretFile: %s\n"+
		"    apiBaseURL: %s\n    authorityHost: %s\n    comment: \"Retired in CMDB ({{.Source}}), request {{.RequestID}}\"\n"+
		"    limits:\n      offboard: %s\n",
		t.name, t.tenantID, t.clientID, secretFile, e.base, e.base, demoLimitsYAML())
	if t.guards != "" {
		yaml.WriteString("    guards:\n" + t.guards)
	}
	return nil
}

// startWorker starts the worker with its embedded NATS server, logging
// warnings and errors only.
func (e *env) startWorker(ctx context.Context, tenantsFile, dir string) (*app.App, error) {
	f, err := config.Parse([]byte(tenantsFile))
	if err != nil {
		return nil, err
	}
	logCfg := zap.NewProductionConfig()
	logCfg.Encoding = "console"
	logCfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	logCfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	log, err := logCfg.Build()
	if err != nil {
		return nil, err
	}
	e.reg = prometheus.NewRegistry()
	e.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := app.New(app.Options{
		Tenants: f, DataDir: filepath.Join(dir, "nats"), EmbeddedListen: "127.0.0.1:-1", Listen: "127.0.0.1:0",
		Logger: log, Registry: e.reg,
		StatsEvery: 250 * time.Millisecond, // the held-requests gauges the demo reads
		HTTPClient: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, // every tenant's calls under way
			TLSClientConfig:     &tls.Config{RootCAs: e.sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := a.Start(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// stop stops the worker, then the simulator.
func (e *env) stop() {
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.app.Stop(sctx)
	e.sim.Close()
}
