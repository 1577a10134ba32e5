// Package app wires the worker together: configuration, NATS (connected or
// embedded), the Defender clients, the HTTP endpoints, and the order in
// which they start and stop. It never touches signals, so tests can run it.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/worker"
)

// Options configure the app. Zero values take the documented defaults.
type Options struct {
	ConfigPath string       // tenants file
	Tenants    *config.File // already loaded; wins over ConfigPath

	NATSURL        string // empty: start an embedded server
	NATSCreds      string // optional credentials file for NATS
	DataDir        string // embedded server storage
	EmbeddedListen string // embedded server client address, default 127.0.0.1:4222
	SubjectPrefix  string
	NoSetup        bool // do not create or update streams and consumers

	Listen string // metrics and health, default :9090

	Queue queue.Settings // stream tuning; Subjects and Tenants are filled in
	// QuotaMargin is added to the times other replicas wrote in the
	// quota journal, for clock skew (default 500ms).
	QuotaMargin time.Duration
	// CallTimeout bounds one API call, its token included (default 30s).
	// A call's place in the quota journal is held for half as long again
	// when its process dies before writing its end.
	CallTimeout time.Duration
	Retry       worker.RetryPolicy
	Poll        time.Duration

	Logger     *zap.Logger
	Registry   *prometheus.Registry // nil: a new one with Go and process collectors
	Clock      clockwork.Clock
	HTTPClient *http.Client // transport for login and API hosts; nil: built per tenant
}

// App is a running worker process.
type App struct {
	opts    Options
	log     *zap.Logger
	reg     *prometheus.Registry
	tenants []*worker.Tenant

	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	router *queue.Router
	shared *limiter.Shared
	follow func() // stops the quota journal feed
	worker *worker.Worker
	http   *http.Server
	lis    net.Listener

	ready     sync.Mutex
	readyAt   time.Time
	readyErr  error
	stopOnce  sync.Once
	stopErr   error
	serveDone chan struct{}
}

// New checks the configuration and builds the tenants' clients. Nothing is
// started yet.
func New(o Options) (*App, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "mde.offboard"
	}
	if o.Listen == "" {
		o.Listen = ":9090"
	}
	if o.DataDir == "" {
		o.DataDir = "./data"
	}
	if o.EmbeddedListen == "" {
		o.EmbeddedListen = "127.0.0.1:4222"
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = mde.DefaultTimeout
	}
	f := o.Tenants
	if f == nil {
		var err error
		if f, err = config.Load(o.ConfigPath); err != nil {
			return nil, err
		}
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	a := &App{opts: o, log: o.Logger, reg: reg, serveDone: make(chan struct{})}
	for _, tc := range f.Tenants {
		hc := o.HTTPClient
		if hc == nil {
			var err error
			if hc, err = httpClient(tc.CAFile, tc.MaxInFlight); err != nil {
				return nil, fmt.Errorf("tenant %s: %w", tc.Name, err)
			}
		}
		cred, err := mde.NewCredential(tc.Credential(), tc.Resolved.Cloud, hc)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: credentials: %w", tc.Name, err)
		}
		client := mde.NewClient(mde.Options{Cloud: tc.Resolved.Cloud, Credential: cred, HTTPClient: hc, Timeout: o.CallTimeout})
		a.tenants = append(a.tenants, &worker.Tenant{Config: tc, Client: client, Cred: cred})
	}
	a.opts.Queue.Subjects = queue.Subjects{Prefix: o.SubjectPrefix}
	a.opts.Queue.Tenants = nil
	for _, t := range a.tenants {
		a.opts.Queue.Tenants = append(a.opts.Queue.Tenants, t.Config.Name)
	}
	a.opts.Queue = a.opts.Queue.WithDefaults()
	if a.opts.QuotaMargin <= 0 {
		a.opts.QuotaMargin = 500 * time.Millisecond
	}
	if back := a.quotaBack(); a.opts.Queue.QuotaHistory < back {
		return nil, fmt.Errorf("quota history %s is shorter than the longest window plus the call lease and margin (%s)", a.opts.Queue.QuotaHistory, back)
	}
	return a, nil
}

// callLease is how long a call may take from its entry in the quota
// journal to its answer: more than the API client's timeout.
func (a *App) callLease() time.Duration { return a.opts.CallTimeout * 3 / 2 }

// quotaBack is how far back the quota journal still counts: the longest
// window of any tenant and API, plus the call lease and the margin.
func (a *App) quotaBack() time.Duration {
	var longest time.Duration
	for _, t := range a.tenants {
		for _, ws := range t.Config.Resolved.Windows {
			for _, w := range ws {
				longest = max(longest, w.Length)
			}
		}
	}
	return longest + a.callLease() + a.opts.QuotaMargin
}

// httpClient returns an HTTP client for the login and API hosts, trusting
// an extra CA bundle when one is given (a TLS-inspecting proxy, a test
// double). It keeps a connection open for each call the tenant may have
// under way: with Go's default of two, most calls paid a new TLS
// handshake.
func httpClient(caFile string, inFlight int) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = inFlight + 2 // the calls, and a lookup or a poll beside them
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	tr.ResponseHeaderTimeout = 30 * time.Second
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s: no PEM certificate in it", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, nil
}

// Start connects to NATS (or starts the embedded server), prepares the
// streams, starts the worker and serves the HTTP endpoints.
func (a *App) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = a.Stop(context.Background())
		}
	}()
	url := a.opts.NATSURL
	if url == "" {
		a.ns, err = queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: a.opts.DataDir, Listen: a.opts.EmbeddedListen})
		if err != nil {
			return err
		}
		url = a.ns.ClientURL()
		a.log.Info("embedded NATS server started", zap.String("url", url), zap.String("data_dir", a.opts.DataDir))
	}
	natsOpts := []nats.Option{
		nats.Name("mde-offboard-worker"),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed the connection ourselves
				a.log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { a.log.Info("NATS reconnected") }),
	}
	if a.opts.NATSCreds != "" {
		natsOpts = append(natsOpts, nats.UserCredentials(a.opts.NATSCreds))
	}
	if a.nc, err = nats.Connect(url, natsOpts...); err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	if a.js, err = jetstream.New(a.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var stale []string
	if a.opts.NoSetup {
		stale, err = queue.Stale(ctx, a.js, a.opts.Queue)
	} else {
		stale, err = queue.Ensure(ctx, a.js, a.opts.Queue)
	}
	if err != nil {
		return fmt.Errorf("prepare streams: %w", err)
	}
	for _, name := range stale {
		a.log.Warn("consumer of a tenant no longer configured: its requests are answered unknown_tenant; remove it once empty",
			zap.String("consumer", name))
	}
	ledger, err := queue.NewLedger(ctx, a.js)
	if err != nil {
		return err
	}
	if a.router, err = queue.NewRouter(a.nc, a.opts.Queue.Subjects); err != nil {
		return err
	}
	journal, err := queue.NewQuotaJournal(ctx, a.js, a.opts.Queue.Subjects)
	if err != nil {
		return err
	}
	a.shared = limiter.NewShared(limiter.SharedOptions{
		Journal: journal, Clock: a.opts.Clock, Margin: a.opts.QuotaMargin, Lease: a.callLease(),
		Metrics: limiter.NewJournalMetrics(a.reg),
	})
	a.worker, err = worker.New(ctx, worker.Options{
		JS: a.js, Settings: a.opts.Queue, Ledger: ledger, Router: a.router,
		Logger: a.log, Metrics: worker.NewMetrics(a.reg), Clock: a.opts.Clock,
		Retry: a.opts.Retry, Poll: a.opts.Poll, Stale: stale, Shared: a.shared,
	}, a.tenants)
	if err != nil {
		return err
	}
	// The feed starts after the worker made its tenants, so none of their
	// journal entries is missed; no call starts before it has caught up.
	if a.follow, err = queue.FollowQuota(ctx, a.js, a.opts.Queue.Subjects, a.shared, a.quotaBack(), a.log); err != nil {
		return err
	}
	if a.lis, err = (&net.ListenConfig{}).Listen(ctx, "tcp", a.opts.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", a.opts.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.serveReady)
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(a.serveDone)
		if err := a.http.Serve(a.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("HTTP server stopped", zap.Error(err))
		}
	}()
	a.worker.Start()
	a.log.Info("worker started", zap.Int("tenants", len(a.tenants)), zap.String("listen", a.lis.Addr().String()))
	return nil
}

// serveReady answers 200 only when NATS is connected and every stream,
// consumer and the ledger exist. The check is cached for a few seconds, so a
// probe never costs more than one round of lookups.
func (a *App) serveReady(w http.ResponseWriter, r *http.Request) {
	err := a.Ready(r.Context())
	if err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Ready reports whether the worker can take requests.
func (a *App) Ready(ctx context.Context) error {
	if a.nc == nil || !a.nc.IsConnected() {
		return errors.New("NATS is not connected")
	}
	if a.shared == nil {
		return errors.New("the quota journal is still being read")
	}
	if err := a.shared.Healthy(); err != nil { // journal read, clock within the margin
		return err
	}
	a.ready.Lock()
	defer a.ready.Unlock()
	if time.Since(a.readyAt) < 5*time.Second {
		return a.readyErr
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := queue.Check(cctx, a.js, a.opts.Queue)
	if errors.Is(err, context.DeadlineExceeded) && !a.readyAt.IsZero() && a.readyErr == nil {
		// Connected, but the server is slow to answer (busy with a
		// thousand tenants): that says nothing about the definitions,
		// and a failing probe would stall a rollout.
		a.log.Debug("readiness check timed out: last answer kept", zap.Error(err))
		err = nil
	}
	a.readyErr = err
	a.readyAt = time.Now()
	return a.readyErr
}

// HTTPAddr is the address the HTTP endpoints listen on.
func (a *App) HTTPAddr() string { return a.lis.Addr().String() }

// NATSURL is the URL of the NATS server in use.
func (a *App) NATSURL() string { return a.nc.ConnectedUrl() }

// Stop shuts down in order: stop fetching, let requests under way finish
// (cancelled when ctx ends), close the HTTP server, then NATS. It is
// idempotent.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() {
		var errs []error
		if a.worker != nil {
			errs = append(errs, a.worker.Stop(ctx))
		}
		if a.shared != nil {
			// Ends of calls not yet written: written now, or the other
			// replicas count them until their lease ends.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.shared.Close(wctx)
			cancel()
		}
		if a.follow != nil {
			a.follow()
		}
		if a.router != nil {
			errs = append(errs, a.router.Close())
		}
		if a.http != nil {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			errs = append(errs, a.http.Shutdown(hctx))
			cancel()
			<-a.serveDone
		}
		if a.nc != nil {
			if err := a.nc.Drain(); err != nil {
				errs = append(errs, err)
			}
			for a.nc.IsDraining() {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if a.ns != nil {
			a.ns.Shutdown()
			a.ns.WaitForShutdown()
		}
		a.stopErr = errors.Join(errs...)
	})
	return a.stopErr
}
