package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// listen binds the HTTP address before anything else starts, so a busy
// port stops the start at once.
func (a *App) listen(ctx context.Context) error {
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.opts.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--listen %s: %w: another process (another worker?) listens there; stop it, or give another --listen", a.opts.Listen, err)
		}
		return fmt.Errorf("--listen %s: %w", a.opts.Listen, err)
	}
	a.lis = lis
	// Closes the listener when the start failed before serving; once
	// served, the HTTP server's cleanup has closed it already.
	a.life.add("HTTP listener", func(context.Context) error {
		if err := lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	return nil
}

// maxScrapes is how many /metrics requests are answered at once.
const maxScrapes = 4

// serve serves /metrics, /healthz and /readyz on the bound listener, and
// /debug/pprof/ when profiling is on.
func (a *App) serve() {
	mux := http.NewServeMux()
	// A few scrapes at once (Prometheus pairs, an operator's curl): more
	// are answered 503 at once, not gathered side by side, each some
	// megabytes of series at thousands of tenants.
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg, MaxRequestsInFlight: maxScrapes}))
	mux.HandleFunc("GET /healthz", a.serveHealth)
	mux.HandleFunc("GET /readyz", a.serveReady)
	to := a.opts.HTTP.withDefaults()
	if a.opts.Profiling {
		// A profile, a trace or a delta profile of N seconds moves its
		// write deadline N seconds past WriteTimeout itself (net/http/pprof),
		// so it runs its length (TestHTTPProfileOutlastsTheRequestTimeout).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", serveCmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	// Requests run under a context that shutdown cancels, so a long one
	// (a profile) ends with the server instead of holding it up.
	base, cancel := context.WithCancel(context.Background())
	a.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: to.ReadHeader,
		// ReadTimeout bounds reading a request, its body included;
		// WriteTimeout the answer, from the end of the request's header.
		ReadTimeout:    to.Request,
		WriteTimeout:   to.Request,
		IdleTimeout:    to.Idle,
		MaxHeaderBytes: maxHeaderBytes,
		BaseContext:    func(net.Listener) context.Context { return base },
	}
	a.http.RegisterOnShutdown(cancel)
	go func() {
		defer close(a.serveDone)
		if err := a.http.Serve(a.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("HTTP server stopped", zap.Error(err))
		}
	}()
}

// serveCmdline is pprof.Cmdline showing the command line as shownArgs
// gives it.
func serveCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, strings.Join(shownArgs(os.Args), "\x00")) //nolint:gosec // text/plain with nosniff: no HTML to inject into
}

// shownArgs is a command line without the user, password or token of the
// NATS URLs given with --nats-url (or -nats-url, with or without '='):
// the only flag whose value may hold a secret.
func shownArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 1; i < len(out); i++ {
		if out[i] == "--" {
			break
		}
		name, value, hasValue := strings.Cut(out[i], "=")
		if name != "-nats-url" && name != "--nats-url" {
			continue
		}
		switch {
		case hasValue:
			out[i] = name + "=" + queue.RedactURLs(value)
		case i+1 < len(out):
			i++
			out[i] = queue.RedactURLs(out[i])
		}
	}
	return out
}

// shutdownHTTP closes the HTTP server, letting answers under way finish
// for up to httpDrain; those still being written then (a scraper that
// stopped reading) are cut short with their connections, which is no
// failure of the stop: nothing a request needs goes over HTTP.
func (a *App) shutdownHTTP(ctx context.Context) error {
	if a.http == nil {
		return nil // never served: the listener's cleanup closes it
	}
	hctx, cancel := context.WithTimeout(ctx, httpDrain)
	defer cancel()
	if err := a.http.Shutdown(hctx); err != nil {
		// Closed, the connections end their handlers' writes: none is
		// left blocked until the write timeout.
		cerr := a.http.Close()
		if errors.Is(cerr, net.ErrClosed) { // the listener, which Shutdown closed
			cerr = nil
		}
		if ctx.Err() != nil { // the stop's own cap, not httpDrain
			return errors.Join(err, cerr, ctx.Err())
		}
		a.log.Warn("HTTP answers still being written at the stop were cut short (a client reading slowly)", zap.Error(err))
		if cerr != nil {
			return cerr
		}
	}
	select {
	case <-a.serveDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// httpDrain is how long the stop lets HTTP answers under way finish.
const httpDrain = 5 * time.Second

// HTTPAddr is the address the HTTP endpoints listen on.
func (a *App) HTTPAddr() string { return a.lis.Addr().String() }

// serveReady answers 200 only when NATS is connected, every stream,
// consumer and the ledger exist, and the worker is not stopping. The check is cached for a few seconds, so a
// probe never costs more than one round of lookups.
func (a *App) serveReady(w http.ResponseWriter, r *http.Request) {
	err := a.Ready(r.Context())
	if err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// serveHealth answers 200 while the process can serve: not once the
// client closed the NATS connection for good, which only a restart makes
// again (a liveness probe's restart).
func (a *App) serveHealth(w http.ResponseWriter, _ *http.Request) {
	if err := a.natsClosed(); err != nil {
		http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// readyFor is how long an answer of Ready is reused.
const readyFor = 5 * time.Second

// Ready reports whether the worker can take requests: not once Stop was
// called, while it finishes those under way.
func (a *App) Ready(ctx context.Context) error {
	if a.stopping.Load() {
		return errors.New("stopping")
	}
	if err := a.natsClosed(); err != nil {
		return err
	}
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
	if !a.readyAt.IsZero() && a.opts.Clock.Since(a.readyAt) < readyFor {
		return a.readyErr
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := queue.Check(cctx, a.js, a.opts.Queue)
	if cerr := ctx.Err(); cerr != nil {
		// The caller left (a client with a short timeout): the check was
		// cut short and says nothing of NATS. Not kept for the next
		// probe, which it would answer 503.
		return fmt.Errorf("readiness check: %w", cerr)
	}
	if errors.Is(err, context.DeadlineExceeded) && !a.readyAt.IsZero() && a.readyErr == nil {
		// Connected, but the server is slow to answer (busy with a
		// thousand tenants): that says nothing about the definitions,
		// and a failing probe would stall a rollout.
		a.log.Debug("readiness check timed out: last answer kept", zap.Error(err))
		err = nil
	}
	a.readyErr = err
	a.readyAt = a.opts.Clock.Now()
	return a.readyErr
}

// defaultHTTPTimeouts are the HTTP endpoints' timeouts when Options.HTTP
// sets none.
var defaultHTTPTimeouts = HTTPTimeouts{
	ReadHeader: 10 * time.Second,
	// Prometheus gives a scrape at most its scrape interval (10s to 1m
	// as a rule); the /metrics of thousands of tenants, some megabytes,
	// goes in well under a second.
	Request: time.Minute,
	// Longer than a scrape interval, so that Prometheus keeps its
	// connection between scrapes.
	Idle: 2 * time.Minute,
}

// maxHeaderBytes bounds a request's header (net/http's default: 1 MiB).
// The endpoints read none but what a client sends unasked; a scraper's
// bearer token (a Kubernetes service account's, some KiB) fits many
// times.
const maxHeaderBytes = 64 << 10

// HTTPTimeouts bound the connections of the HTTP endpoints, so that
// clients that open connections and keep them idle, or read an answer a
// byte a second, cannot hold goroutines and buffers for ever.
type HTTPTimeouts struct {
	// ReadHeader bounds reading a request's header.
	ReadHeader time.Duration
	// Request bounds reading a request and writing its answer, from the
	// end of its header; a profile (/debug/pprof/profile?seconds=N, a
	// trace, a delta profile) gets its N seconds on top.
	Request time.Duration
	// Idle is how long a kept-alive connection may wait for its next
	// request.
	Idle time.Duration
}

// withDefaults fills the zero fields from defaultHTTPTimeouts.
func (t HTTPTimeouts) withDefaults() HTTPTimeouts {
	if t.ReadHeader <= 0 {
		t.ReadHeader = defaultHTTPTimeouts.ReadHeader
	}
	if t.Request <= 0 {
		t.Request = defaultHTTPTimeouts.Request
	}
	if t.Idle <= 0 {
		t.Idle = defaultHTTPTimeouts.Idle
	}
	return t
}
