package offboard_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// The example's tenant, as the simulator and the worker know it.
const (
	exampleTenantID = "11111111-2222-3333-4444-555555555555"
	exampleClientID = "66666666-7777-8888-9999-000000000000"
	exampleSecret   = "example-client-secret"
)

// startWorker sets up, in this process, what a publisher talks to in
// production: an embedded NATS server with JetStream (a free port, storage
// in a temporary directory), the Defender for Endpoint simulator in place
// of the API, holding the device 1e5bc9d7…, and a worker serving tenant
// "contoso" against it. It returns a JetStream client of that server and a
// func that stops it all.
func startWorker(ctx context.Context) (js jetstream.JetStream, stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	dir, err := os.MkdirTemp("", "offboard-example-")
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(dir) })

	sim := mdesim.New(mdesim.Options{})
	base := sim.StartTLS()
	stops = append(stops, sim.Close)
	sim.AddTenant(mdesim.Tenant{TenantID: exampleTenantID, ClientID: exampleClientID, ClientSecret: exampleSecret})
	sim.AddMachine(exampleTenantID, mdesim.Machine{
		ID: "1e5bc9d7e413ddd7902c2932e418702b84d0cc07", ComputerDNSName: "laptop-123.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Now().Add(-30 * 24 * time.Hour),
	})
	secretFile := filepath.Join(dir, "contoso.secret")
	if err := os.WriteFile(secretFile, []byte(exampleSecret), 0o600); err != nil {
		return nil, nil, err
	}
	tenants, err := config.Parse([]byte("tenants:\n  - name: contoso\n    tenantId: " + exampleTenantID +
		"\n    clientId: " + exampleClientID + "\n    clientSecretFile: " + secretFile +
		"\n    apiBaseURL: " + base + "\n    authorityHost: " + base + "\n"))
	if err != nil {
		return nil, nil, err
	}

	a, err := app.New(app.Options{
		Tenants: tenants, DataDir: filepath.Join(dir, "nats"), EmbeddedListen: "127.0.0.1:-1", Listen: "127.0.0.1:0",
		Poll: 100 * time.Millisecond, // a fetch waits this long at most, and so Stop
		HTTPClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: sim.CertPool(), MinVersion: tls.VersionTLS12},
		}},
	})
	if err != nil {
		return nil, nil, err
	}
	if err := a.Start(ctx); err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = a.Stop(sctx)
	})

	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, nc.Close)
	if js, err = jetstream.New(nc); err != nil {
		return nil, nil, err
	}
	return js, stop, nil
}
