package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpproxy"

	"github.com/contoso-secops/mde-offboard/internal/buildinfo"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Options configure the app. Zero values take the documented defaults.
type Options struct {
	ConfigPath string       // tenants file
	Tenants    *config.File // already loaded; wins over ConfigPath

	NATSURL        string // empty: start an embedded server
	NATSCreds      string // optional credentials file for NATS
	NATSTLSCA      string // CA bundle to trust for the NATS server
	NATSTLSCert    string // client certificate for NATS, with NATSTLSKey
	NATSTLSKey     string
	DataDir        string // embedded server storage, default DefaultDataDir
	EmbeddedListen string // embedded server client address, default DefaultEmbeddedListen
	SubjectPrefix  string // default DefaultSubjectPrefix
	NoSetup        bool   // do not create or update streams and consumers

	// PingInterval is how often the connection to NATS is checked (default
	// DefaultPingInterval); two checks unanswered close it, and a server
	// is looked for again.
	PingInterval time.Duration

	// NATSInboxPrefix replaces _INBOX in the connection's reply subjects
	// (queue.Conn.InboxPrefix); empty: _INBOX.
	NATSInboxPrefix string

	Listen string // metrics and health, default DefaultListen
	// Profiling serves Go's runtime profiles under /debug/pprof/ on
	// Listen. Off by default: a profile shows no secret, but anyone who
	// can reach the port could make the process spend CPU on one.
	Profiling bool
	// HTTP bounds the connections to Listen; zero fields: the defaults
	// (a header in 10s, a request and its answer in 1m, 2m idle). Tests
	// shorten them.
	HTTP HTTPTimeouts

	// ShutdownTimeout is how long Stop lets requests under way finish
	// before it cancels them (default 30s). Stop returns at the latest
	// 15s after that, whatever its caller's context does.
	ShutdownTimeout time.Duration

	Queue queue.Settings // stream tuning; Subjects and Tenants are filled in
	// QuotaMargin is added to the times other replicas wrote in the
	// quota journal, for clock skew (default DefaultQuotaMargin).
	QuotaMargin time.Duration
	// CallTimeout bounds one API call, its token included (default 30s).
	// A call's place in the quota journal is held for half as long again
	// when its process dies before writing its end.
	CallTimeout time.Duration
	Retry       worker.RetryPolicy
	Poll        time.Duration
	// PresenceBeat is how often a replica announces itself to the others
	// (default queue.PresenceBeat); a replica that dies hands its tenants
	// over after three beats. Every replica must use the same.
	PresenceBeat time.Duration
	// ReplicaID names this replica among the others (a pod's name): a
	// worker restarted under the same name takes its tenants back at
	// once, where a new name waits until the dead one's announcement
	// expires. Empty: host, process id and a random part. Two live
	// replicas must never share a name.
	ReplicaID  string
	StatsEvery time.Duration // how often backlog, waiting age and quota gauges are refreshed (default 15s)
	SweepEvery time.Duration // how often each tenant's answered requests left in the request stream are looked for (default 10m)
	// ActionShowsWithin is how long a new action may take to show in
	// lists (worker.Options; default a minute). Tests shorten it.
	ActionShowsWithin time.Duration
	// MaxRequests bounds the requests worked on at once over all tenants
	// (0: DefaultMaxRequests; negative: no bound).
	MaxRequests int
	// Plan tunes the answers to campaign plan requests.
	Plan worker.PlanOptions

	Logger     *zap.Logger
	Registry   *prometheus.Registry // nil: a new one with Go and process collectors
	Clock      clockwork.Clock
	HTTPClient *http.Client // transport for login and API hosts; nil: one per CA bundle, shared by its tenants
}

// App is a running worker process.
type App struct {
	opts    Options
	log     *zap.Logger
	reg     *prometheus.Registry
	tenants []*worker.Tenant

	life lifecycle

	lis       net.Listener // bound first: a busy port fails before NATS is touched
	http      *http.Server
	serveDone chan struct{}

	ns        *server.Server
	nc        *nats.Conn
	ncClosed  chan struct{} // closed by the connection's ClosedHandler
	gone      chan struct{} // closed by it when the connection was closed for good (closedForGood)
	goneOnce  sync.Once
	lost      chan struct{}    // asks keepConsumers to look for lost consumers
	connected prometheus.Gauge // mde_offboard_nats_connected
	slow      *slowConsumers   // the connection's slow consumer reports
	js        jetstream.JetStream
	// replicaID is this replica's name among the replicas, the one
	// given or the one made up at start (startPresence).
	replicaID string
	// presence is this replica's presence once started (startPresence).
	presence atomic.Pointer[queue.Presence]
	router   *queue.Router
	// routed is router for the reconnect handler, which may run while
	// the start makes it.
	routed       atomic.Pointer[queue.Router]
	shared       *limiter.Shared
	follow       func()          // stops the quota journal feed
	budget       *limiter.Shared // the budgets' journal (budget.go)
	followBudget func()          // stops the budget journal feed
	// budgetKept is how long the budget journal's stream keeps its
	// entries when that is longer than --budget-history (keptBudget).
	budgetKept time.Duration
	worker     *worker.Worker

	ready    sync.Mutex
	readyAt  time.Time
	readyErr error
	stopping atomic.Bool // set by Stop: no request is taken any more

	// The start under way, ended by a Stop that comes meanwhile (begin).
	startMu     sync.Mutex
	cancelStart context.CancelCauseFunc
	startDone   chan struct{} // closed when Start has returned

	// onConnChange, when set before Start, hears every change of the
	// NATS connection's state (tests wait on it).
	onConnChange func(connected bool)
	// embeddedMaxStore, when set before Start, bounds the embedded
	// server's storage (tests: a full disk).
	embeddedMaxStore int64
}

// New checks the configuration and builds the tenants' clients. Nothing is
// started yet.
func New(o Options) (*App, error) {
	o = o.withDefaults()
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
	if err := o.checkFlags(); err != nil {
		return nil, err
	}
	a := &App{opts: o, log: o.Logger, reg: reg, serveDone: make(chan struct{}), ncClosed: make(chan struct{}), gone: make(chan struct{}), lost: make(chan struct{}, 1)}
	if err := a.checkCallTimeout(); err != nil {
		return nil, err
	}
	var err error
	if a.tenants, err = newTenants(f, o); err != nil {
		return nil, err
	}
	a.registerCertificateExpiry()
	a.registerGuardsDisagree()
	a.opts.Queue.Subjects = offboard.Subjects{Prefix: o.SubjectPrefix}
	a.opts.Queue.Tenants = nil
	a.opts.Queue.Limits = map[string]string{}
	a.opts.Queue.Budgets = map[string]string{}
	for _, t := range a.tenants {
		a.opts.Queue.Tenants = append(a.opts.Queue.Tenants, t.Config.Name)
		var ws []string
		for _, w := range t.Config.Resolved.Windows[mde.APIOffboard] {
			ws = append(ws, w.String())
		}
		a.opts.Queue.Limits[t.Config.Name] = strings.Join(ws, ",")
		if b := t.Config.Guards.BudgetWindow; b != nil {
			a.opts.Queue.Budgets[t.Config.Name] = b.String()
		}
	}
	a.opts.Queue = a.opts.Queue.WithDefaults()
	if err := a.checkHistories(); err != nil {
		return nil, err
	}
	return a, nil
}

// CheckConfig makes the checks of New that need no secret: the tenants
// file f against the options (the call timeout, and the tenants' windows
// and budgets against what the quota and budget journals keep).
func CheckConfig(f *config.File, o Options) error {
	if err := o.checkFlags(); err != nil {
		return err
	}
	a := &App{opts: o.withDefaults()}
	a.opts.Queue = a.opts.Queue.WithDefaults()
	for _, tc := range f.Tenants {
		a.tenants = append(a.tenants, &worker.Tenant{Config: tc})
	}
	if err := a.checkCallTimeout(); err != nil {
		return err
	}
	return a.checkHistories()
}

// CheckFiles reads the files the tenants of f name, as New does, without
// building a credential or contacting anything: each tenant's secret,
// certificate, password or federated token file, checked at now
// (mde.CredentialConfig.CheckFiles), and its caFile. One error per
// problem, in the words New uses, naming the tenant and the setting,
// never a path or what a file holds. A CA bundle shared by tenants is
// read once.
func CheckFiles(f *config.File, now time.Time) []error {
	var errs []error
	cas := map[string]error{}
	for _, tc := range f.Tenants {
		if err := tc.Credential().CheckFiles(now); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: credentials: %w", tc.Name, err))
		}
		if tc.CAFile == "" {
			continue
		}
		err, ok := cas[tc.CAFile]
		if !ok {
			_, err = caPool(tc.CAFile)
			cas[tc.CAFile] = err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", tc.Name, err))
		}
	}
	return errs
}

// checkFlags refuses connection settings and a replica id that cannot
// work, before anything starts.
func (o Options) checkFlags() error {
	if err := o.natsConn().Check(); err != nil {
		return err
	}
	if o.ReplicaID != "" && !validReplicaID(o.ReplicaID) {
		// Not quoted: a secret given to the wrong flag would be shown.
		return errors.New("--replica-id: want 1 to 64 letters, digits, '-' or '_'")
	}
	if err := checkAddress("--listen", o.Listen, 0); err != nil {
		return err
	}
	if o.NATSURL == "" {
		if err := checkEmbedded(o); err != nil {
			return err
		}
		// -1: a free port, as 0 (the embedded server's own spelling).
		if err := checkAddress("--embedded-listen", o.EmbeddedListen, -1); err != nil {
			return err
		}
		// The HTTP listener is bound first: the embedded server then
		// failed on "address already in use", exit 1, which sent the
		// reader looking for another process.
		if samePort(cmp.Or(o.Listen, DefaultListen), cmp.Or(o.EmbeddedListen, DefaultEmbeddedListen)) {
			return errors.New("--embedded-listen: the port --listen takes on the same address; give the embedded NATS server and /metrics a port each")
		}
	}
	return nil
}

// samePort says whether two listen addresses (checked) take one port of
// one address: the same port number, not 0 or -1 (a free one), on the
// same host, or where one listens on every address. No name is looked
// up but localhost, which listens on 127.0.0.1 or ::1.
func samePort(a, b string) bool {
	ah, ap, aerr := net.SplitHostPort(a)
	bh, bp, berr := net.SplitHostPort(b)
	an, _ := strconv.Atoi(ap)
	bn, _ := strconv.Atoi(bp)
	if aerr != nil || berr != nil || an <= 0 || an != bn {
		return false
	}
	return sameHost(ah, bh) || sameHost(bh, ah)
}

// sameHost says whether a listener on host a takes the addresses of one
// on host b: the same host, a's every address (none, or "::", which
// takes IPv4's too), 0.0.0.0 and any IPv4 address or name, or localhost
// and a loopback address it stands for.
func sameHost(a, b string) bool {
	ai, bi := net.ParseIP(a), net.ParseIP(b)
	switch {
	case strings.EqualFold(a, b), a == "", ai != nil && ai.Equal(net.IPv6unspecified):
		return true
	case ai != nil && ai.Equal(net.IPv4zero):
		return b == "" || bi == nil || bi.To4() != nil
	case strings.EqualFold(a, "localhost"):
		return bi != nil && (bi.Equal(net.IPv4(127, 0, 0, 1)) || bi.Equal(net.IPv6loopback))
	}
	return ai != nil && bi != nil && ai.Equal(bi)
}

// checkEmbedded refuses the settings the embedded server, one node
// without TLS, users or accounts, cannot take: they passed --check-config, and the start
// failed once the server was up, exit 1, as if NATS were down.
func checkEmbedded(o Options) error {
	if o.Queue.Replicas > 1 {
		return fmt.Errorf("--stream-replicas %d: the embedded NATS server (no --nats-url) is one node, which keeps one copy: want 1, or a clustered server's --nats-url", o.Queue.Replicas)
	}
	for _, f := range []struct{ flag, value string }{{"--tlsca", o.NATSTLSCA}, {"--tlscert", o.NATSTLSCert}, {"--tlskey", o.NATSTLSKey}} {
		if f.value != "" {
			return fmt.Errorf("%s: the embedded NATS server (no --nats-url) takes no TLS: give the --nats-url of the server it belongs to", f.flag)
		}
	}
	// The embedded server has no users: it took the connection without
	// looking at the file, and the worker served a server of its own
	// while the requests waited on the one the credentials were for (its
	// URL lost: a variable from an empty Secret key sets nothing).
	if o.NATSCreds != "" {
		return errors.New("--nats-creds: the embedded NATS server (no --nats-url) takes no credentials: give the --nats-url of the server they belong to")
	}
	// So for an inbox prefix, which names the subjects a server's
	// account lets this user alone read: deploy/kubernetes sets one
	// beside the URL, which a Secret's empty key left out.
	if o.NATSInboxPrefix != "" {
		return errors.New("--nats-inbox-prefix: the embedded NATS server (no --nats-url) has no accounts to keep replies apart in: give the --nats-url of the server it belongs to")
	}
	return nil
}

// checkAddress refuses a listen address that is not a host (a name or
// an IP address, or none) and a port number, before anything starts:
// the listener's own error quotes the address whole, and a NATS URL
// given to the wrong flag would be shown with its password. Its error
// names the flag, not the value. Empty takes the default. A port under
// leastPort is refused: the HTTP listener takes 0 for a free port, not
// the embedded server's -1.
func checkAddress(flag, addr string, leastPort int64) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	var n int64
	if err == nil {
		n, err = strconv.ParseInt(port, 10, 32)
	}
	if err != nil || n < leastPort || n > 65535 || strings.ContainsFunc(host, func(r rune) bool { return !hostRune(r) }) {
		return fmt.Errorf("%s: want host:port with a port number, such as 127.0.0.1:9090 or :9090", flag)
	}
	return nil
}

// hostRune says whether r may be in a host name or an IP address
// (an IPv6 zone included).
func hostRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._:%", r)
}

// checkCallTimeout refuses a call timeout whose lease other replicas
// could not count. The timeout itself is compared: 1.5 times one near
// the longest duration wraps round to a negative lease.
func (a *App) checkCallTimeout() error {
	if a.opts.CallTimeout > limiter.MaxLease*2/3 {
		return fmt.Errorf("--call-timeout %s: at most %s (other replicas count a call as under way for 1.5 times it, %s at most)",
			a.opts.CallTimeout, limiter.MaxLease*2/3, limiter.MaxLease)
	}
	return nil
}

// checkHistories refuses windows and budgets longer than the quota and
// budget journals keep, and a tracking longer than the ledger keeps its
// followed actions.
func (a *App) checkHistories() error {
	if back := a.backOf(0); a.opts.Queue.QuotaHistory < back {
		return fmt.Errorf("--quota-history %s is shorter than a 429's longest pause or the call lease, and the margin (%s)", a.opts.Queue.QuotaHistory, back)
	}
	if err := a.checkWindows(); err != nil {
		return err
	}
	if err := a.checkTracking(); err != nil {
		return err
	}
	return a.checkBudgets()
}

// checkTracking refuses a tracking maxAge that the ledger's TTL does not
// exceed. A followed action's state is written again at each look, and
// the looks of many actions are spread up to maxAge apart (followed /
// budget): a state the TTL removed meanwhile ended its tracking without
// a final event.
func (a *App) checkTracking() error {
	for _, t := range a.tenants {
		tr := t.Config.Tracking
		if tr.Enabled && time.Duration(tr.MaxAge) >= a.opts.Queue.LedgerTTL {
			return fmt.Errorf("tenant %s: tracking.maxAge %s is not shorter than the ledger TTL %s, which must keep a followed action's state between its looks: raise --ledger-ttl",
				t.Config.Name, time.Duration(tr.MaxAge), a.opts.Queue.LedgerTTL)
		}
	}
	return nil
}

// newTenants builds each tenant's credential and API client. The tenants
// share their HTTP clients (see transports).
func newTenants(f *config.File, o Options) ([]*worker.Tenant, error) {
	clients := map[string]*http.Client{}
	if o.HTTPClient == nil {
		var err error
		if clients, err = transports(f.Tenants, o.MaxRequests, o.CallTimeout); err != nil {
			return nil, err
		}
	}
	var tenants []*worker.Tenant
	for _, tc := range f.Tenants {
		hc := o.HTTPClient
		if hc == nil {
			hc = clients[tc.CAFile]
		}
		cred, err := mde.NewCredential(tc.Credential(), tc.Resolved.Cloud, hc)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: credentials: %w", tc.Name, err)
		}
		// The tenant as a field of the one warning, not a logger of its
		// own: With copies the encoder, a KiB or two for each of
		// thousands of tenants.
		name, log := tc.Name, o.Logger
		cred.OnBrokenFile(func(err error) {
			log.Warn("the tenant's credential cannot be built again (its files changed, or what they hold was refused): its last token serves until it expires, then every call fails",
				zap.String("tenant", name), zap.Error(err))
		})
		cred.OnTokenInHand(func(err error) {
			log.Warn("no new token could be had: the tenant's calls take the token in hand until a minute before it expires, then fail",
				zap.String("tenant", name), zap.Error(err))
		})
		client := mde.NewClient(mde.Options{Cloud: tc.Resolved.Cloud, Credential: cred, HTTPClient: hc, Timeout: o.CallTimeout})
		tenants = append(tenants, &worker.Tenant{Config: tc, Client: client, Cred: cred})
	}
	return tenants, nil
}

// idleFor is, per CA bundle, the calls its tenants may have under way at
// once. A request makes one call at a time (a token, a lookup, a check of
// the device, the offboard): at most maxInFlight requests a tenant, and
// maxRequests in all when positive (Options.MaxRequests). Beside them a
// tenant that tracks its actions polls one at a time; a campaign plan's
// listing, now and then, dials when no connection is free. Calls that end
// and start together dial more connections than are ever under way at
// once, and each kept connection holds two goroutines and its buffers
// over HTTP/1.1: at 1000 busy tenants, kept up to maxIdlePerHost, some
// 730 connections stayed open instead of 512, and the peak RSS was 13 MiB
// higher (Tenants1000).
func idleFor(tenants []*config.Tenant, maxRequests int) map[string]int {
	requests, polls := map[string]int{}, map[string]int{}
	for _, tc := range tenants {
		requests[tc.CAFile] += tc.MaxInFlight
		if tc.Tracking.Enabled {
			polls[tc.CAFile]++
		}
	}
	idle := map[string]int{}
	for ca, n := range requests {
		if maxRequests > 0 {
			n = min(n, maxRequests)
		}
		idle[ca] = min(n+polls[ca], maxIdlePerHost)
	}
	return idle
}

// maxIdlePerHost caps the idle connections a transport keeps per host.
const maxIdlePerHost = 1024

// transports builds one HTTP client per CA bundle (none: the system's),
// shared by the tenants that name it. A connection belongs to no tenant:
// the bearer token travels with each request, and a transport keeps its
// connections per host, so tenants of one cloud share the API and login
// hosts' connections. Each client keeps open a connection for every call
// its tenants may have under way (idleFor), up to maxIdlePerHost, and
// closes the others when their call ends. It opens more when needed: a
// cap on the connections shared by all tenants would let some tenants'
// hanging calls hold every connection while the others' calls wait.
// Each call may take callTimeout (httpClient).
func transports(tenants []*config.Tenant, maxRequests int, callTimeout time.Duration) (map[string]*http.Client, error) {
	idle := idleFor(tenants, maxRequests)
	clients := map[string]*http.Client{}
	for _, tc := range tenants {
		if clients[tc.CAFile] != nil {
			continue
		}
		hc, err := httpClient(tc.CAFile, idle[tc.CAFile], callTimeout)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", tc.Name, err)
		}
		clients[tc.CAFile] = hc
	}
	return clients, nil
}

// callLease is how long a call may take from its entry in the quota
// journal to its answer: more than the API client's timeout.
func (a *App) callLease() time.Duration { return a.opts.CallTimeout * 3 / 2 } // at most limiter.MaxLease (New)

// checkWindows refuses a tenant's window that the quota journal keeps
// too short a history for, naming the tenant, the API and the window:
// quotaBack's error gives the longest of every tenant's windows alone.
func (a *App) checkWindows() error {
	for _, t := range a.tenants {
		for _, api := range mde.APIs {
			for _, w := range t.Config.Resolved.Windows[api] {
				if back := a.backOf(w.Length); back > a.opts.Queue.QuotaHistory {
					return fmt.Errorf("tenant %s: limits.%s %s: quota history %s is shorter than the window plus the call lease, and the margin (%s): raise --quota-history",
						t.Config.Name, api, w, a.opts.Queue.QuotaHistory, back)
				}
			}
		}
	}
	return nil
}

// quotaBack is how far back the quota journal still counts: the longest
// window of any tenant and API plus the call lease, or a 429's longest
// pause if longer, and the margin.
func (a *App) quotaBack() time.Duration {
	var longest time.Duration
	for _, t := range a.tenants {
		for _, ws := range t.Config.Resolved.Windows {
			for _, w := range ws {
				longest = max(longest, w.Length)
			}
		}
	}
	return a.backOf(longest)
}

// backOf is how far back the quota journal must count for a window of
// length w: the window plus the call lease, or a 429's longest pause if
// longer, and the margin.
func (a *App) backOf(w time.Duration) time.Duration {
	return addCapped(max(addCapped(w, a.callLease()), limiter.MaxPause), a.opts.QuotaMargin)
}

// addCapped is a+b for durations that are not negative, at most the
// longest Duration: a window near it (1/2562047h47m16s) must not wrap
// round to a short back that checkHistories lets through.
func addCapped(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// httpReadBuffer is the size of each HTTP/1.1 connection's read buffer.
const httpReadBuffer = 2 << 10

// httpClient returns an HTTP client for the login and API hosts, trusting
// an extra CA bundle when one is given (a TLS-inspecting proxy, a test
// double). It speaks HTTP/2 to a host that offers it: the calls under way,
// of every tenant, then share a connection or a few (at 1000 busy tenants,
// 15-17 open files instead of about a thousand, and about 40 MiB less
// memory). Calls that start together while no connection is up yet dial
// one each; the extras are closed once one is up. Over
// HTTP/1.1 each call under way takes a connection, and up to idle of them
// stay open per host: with Go's default of two, most calls paid a new TLS
// handshake. The environment's proxy settings apply, but not to the
// instance metadata service and other managed identity endpoints (proxyFor); a proxy that refuses a tunnel is
// told by its status (mde.ProxyConnectAnswer). A call is bounded by callTimeout
// (--call-timeout), its context's; the client's own bounds catch what no
// context bounds, and are never shorter.
func httpClient(caFile string, idle int, callTimeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = idle
	tr.Proxy = proxyFor(httpproxy.FromEnvironment(), os.Getenv)
	// A proxy's refused tunnel is told by its status.
	tr.OnProxyConnectResponse = mde.ProxyConnectAnswer
	tr.MaxIdleConns = 0 // no limit over all hosts: the per-host one holds
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	// A custom TLS configuration turns HTTP/2 off unless asked for.
	tr.ForceAttemptHTTP2 = true
	// Many calls share an HTTP/2 connection: one that went silent (a
	// middlebox dropped it) is checked with a ping after 15 s without a
	// frame and closed if the ping is not answered within 15 s, instead
	// of taking new calls until each times out.
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second}
	// Not shorter than a call may take: fixed at 30 s, and the whole
	// exchange at 60 s, they failed every call a longer --call-timeout
	// was set to wait for (a slow gateway), and the flag did nothing.
	tr.ResponseHeaderTimeout = max(30*time.Second, callTimeout)
	// Each HTTP/1.1 connection holds a read buffer, 4 KiB by default,
	// where an answer's headers need about a quarter of that and a
	// longer body is read past the buffer: at 512 calls under way, 1 MiB
	// less. The write buffer stays at 4 KiB: a call's request, with a
	// bearer token of 1-2 KiB, goes out in one TLS record.
	tr.ReadBufferSize = httpReadBuffer
	if caFile != "" {
		pool, err := caPool(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: max(60*time.Second, callTimeout)}, nil
}

// caPool is the system's certificates and those of the CA bundle caFile
// names. Its error names the setting, not the path or the content.
func caPool(caFile string) (*x509.CertPool, error) {
	pem, err := mde.ReadCredentialFile("caFile", caFile, maxCAFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(mde.PEMText(pem)) {
		return nil, errors.New("caFile: no PEM certificate in the file it names")
	}
	return pool, nil
}

// maxCAFile bounds a CA bundle, as a certificate file is bounded: the
// system's whole bundle takes well under a megabyte. It is read as the
// credential files are: a device or a FIFO named by mistake would be read
// for ever or block the start, and an error naming the path would show a
// secret pasted as caFile's value, in place of clientSecretFile's.
const maxCAFile = 4 << 20

// Start binds the HTTP address, connects to NATS (or starts the embedded
// server), prepares the streams, starts the worker and serves the HTTP
// endpoints. Each part it brings up registers its cleanup; when a part
// fails, the parts already up are stopped again.
func (a *App) Start(ctx context.Context) (err error) {
	ctx, end, err := a.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	defer func() {
		if err == nil {
			return
		}
		if errors.Is(context.Cause(ctx), ErrStopped) {
			err = fmt.Errorf("%w: %w", ErrStopped, err)
		}
		if queue.StoreRefused(err) {
			err = fmt.Errorf("%w: %s", err, a.storeRefusedHint(err))
		}
		a.stopping.Store(true)
		_ = a.life.stop(context.Background(), a.stopLimit())
	}()
	if err := a.listen(ctx); err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	a.life.add("HTTP server", a.shutdownHTTP)
	stale, ledger, err := a.prepareQueue(ctx)
	if err != nil {
		return err
	}
	if err := a.startWorker(ctx, stale, ledger); err != nil {
		return err
	}
	if err := a.startKeeper(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // stopped meanwhile: take no request
	}
	a.serve()
	a.worker.Start()
	// The replica id made up at start is told here alone: the other
	// replicas' lines and the presence bucket name replicas by it.
	a.log.Info("worker started", zap.Int("tenants", len(a.tenants)), zap.String("listen", a.lis.Addr().String()),
		zap.String("version", buildinfo.Read().String()), zap.String("replica", a.replicaID),
		zap.String("nats", queue.RedactURLs(a.nc.ConnectedUrl())), zap.String("subject_prefix", a.opts.SubjectPrefix))
	return nil
}

// storeRefusedHint is what an operator does about err, a refusal of
// queue.StoreRefused: queue.StoreRefusedHint, and when the embedded
// server is out of storage, where it stores. Its max_file_store is no
// setting but three quarters of the space free on --data-dir's disk at
// its start, none on a full disk.
func (a *App) storeRefusedHint(err error) string {
	if a.ns == nil || !queue.OutOfStorage(err) {
		return queue.StoreRefusedHint
	}
	var room string
	if c := a.ns.JetStreamConfig(); c != nil {
		room = fmt.Sprintf(" %d MiB", c.MaxStore>>20)
	}
	return fmt.Sprintf("%s; the embedded NATS server stores under --data-dir %s, at most%s there: three quarters of the space its disk had free at the start; free space on that disk, or give --data-dir a larger one, and restart",
		queue.StoreRefusedHint, a.opts.DataDir, room)
}

// begin makes the context of the start, which a Stop that comes before
// the start is over ends (ErrStopped), and end, which says the start is
// over. An app stopped already, or started already, is not started.
func (a *App) begin(ctx context.Context) (context.Context, func(), error) {
	a.startMu.Lock()
	defer a.startMu.Unlock()
	switch {
	case a.stopping.Load():
		return nil, nil, ErrStopped
	case a.startDone != nil:
		return nil, nil, errors.New("started already")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	a.cancelStart, a.startDone = cancel, done
	return ctx, func() {
		cancel(nil)
		close(done)
	}, nil
}

// haltStart ends the start under way, if any, and waits until it is over
// (it then stopped what it had brought up) or until the deadline.
func (a *App) haltStart(deadline time.Time) {
	a.startMu.Lock()
	cancel, done := a.cancelStart, a.startDone
	a.startMu.Unlock()
	if cancel == nil {
		return
	}
	cancel(ErrStopped)
	wait := time.NewTimer(time.Until(deadline)) // real time: bounds a shutdown, not logic
	defer wait.Stop()
	select {
	case <-done:
	case <-wait.C:
	}
}

// setupWait bounds how long a starting worker waits for NATS to take its
// streams: a cluster still forming, or without quorum. Well inside the
// Kubernetes manifest's start-up probe (60 s), which the wait comes under.
const setupWait = 30 * time.Second

// setUp creates or updates the streams and consumers (with --no-setup,
// only lists the stale consumers). While NATS is not ready for them
// (queue.NotReady), it tries again every second, for setupWait: a worker
// started with its NATS cluster would otherwise stop and count on being
// restarted.
func (a *App) setUp(ctx context.Context) ([]string, error) {
	start := time.Now() // real time: bounds a wait on NATS, not logic
	for attempt := 1; ; attempt++ {
		var (
			stale []string
			err   error
		)
		if a.opts.NoSetup {
			stale, err = queue.Stale(ctx, a.js, a.opts.Queue)
		} else {
			stale, err = queue.Ensure(ctx, a.js, a.opts.Queue)
		}
		if refused, explained := queue.Refusal(a.nc, err); refused {
			// Not NATS being slow: its answers cannot reach us, or the
			// request was not ours to make. No use waiting.
			return stale, explained
		}
		if err == nil || !queue.NotReady(err) || time.Since(start) >= setupWait {
			return stale, err
		}
		fields := []zap.Field{zap.Int("attempt", attempt), zap.Error(err)}
		if queue.ClusterForming(err) {
			fields = append(fields, zap.String("hint", fmt.Sprintf("a cluster still forming; or fewer servers than --stream-replicas %d, which will not pass", a.opts.Queue.Replicas)))
		}
		a.log.Warn("NATS cannot take the streams yet; trying again", fields...)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// prepareQueue creates or checks the streams and consumers, and opens the
// ledger, the router and the quota journal.
func (a *App) prepareQueue(ctx context.Context) ([]string, *queue.Ledger, error) {
	stale, err := a.setUp(ctx)
	if err != nil && a.opts.Queue.Replicas > 1 && queue.ReplicasUnsupported(err) {
		// Once, naming the flag: the server's refusal came once for each
		// stream, naming no setting.
		return nil, nil, fmt.Errorf("prepare streams: --stream-replicas %d: the NATS server is not clustered and keeps one copy of a stream: want 1, or the --nats-url of a cluster", a.opts.Queue.Replicas)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("prepare streams: %w", queue.ExplainNoJetStream(ctx, a.js, err))
	}
	a.keptBudget(ctx)
	for _, name := range stale {
		a.log.Warn("consumer of a tenant no longer configured: its requests are answered unknown_tenant; remove it once empty",
			zap.String("consumer", name))
	}
	ledger, err := queue.NewLedger(ctx, a.js)
	if err != nil {
		return nil, nil, err
	}
	if a.router, err = queue.NewRouter(a.nc, a.opts.Queue.Subjects, a.opts.Queue.Tenants...); err != nil {
		return nil, nil, err
	}
	a.routed.Store(a.router)
	a.life.add("router", func(context.Context) error { return a.router.Close() })
	journal, err := queue.NewQuotaJournal(ctx, a.js, a.opts.Queue.Subjects)
	if err != nil {
		return nil, nil, err
	}
	a.life.add("quota journal feed", func(context.Context) error {
		if a.follow != nil {
			a.follow()
		}
		return nil
	})
	a.shared = limiter.NewShared(limiter.SharedOptions{
		Journal: journal, Clock: a.opts.Clock, Margin: a.opts.QuotaMargin, Lease: a.callLease(),
		Metrics: limiter.NewJournalMetrics(a.reg),
	})
	a.life.add("quota journal writes", func(ctx context.Context) error {
		// Ends of calls not yet written: written now, or the other
		// replicas count them until their lease ends.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		a.shared.Close(wctx)
		return nil
	})
	if err := a.openBudget(ctx); err != nil {
		return nil, nil, err
	}
	return stale, ledger, nil
}

// startWorker makes the worker and starts the quota journal's feed. The
// worker's fetching starts later, in Start.
func (a *App) startWorker(ctx context.Context, stale []string, ledger *queue.Ledger) error {
	presence, err := a.startPresence(ctx)
	if err != nil {
		return err
	}
	ctrl, err := a.startControl(ctx)
	if err != nil {
		return err
	}
	a.worker, err = worker.New(ctx, worker.Options{
		JS: a.js, Settings: a.opts.Queue, Ledger: ledger, Router: a.router,
		Logger: a.log, Metrics: worker.NewMetrics(a.reg), Clock: a.opts.Clock,
		Retry: a.opts.Retry, Poll: a.opts.Poll, StatsEvery: a.opts.StatsEvery, SweepEvery: a.opts.SweepEvery, Stale: stale, Shared: a.shared,
		Presence: presence, Assignment: presence, Control: ctrl, Plan: a.opts.Plan, Budget: a.budget, BudgetHorizon: a.budgetHorizon(),
		MaxRequests: max(a.opts.MaxRequests, 0), ConsumerLost: a.consumerLost, ActionShowsWithin: a.opts.ActionShowsWithin,
		StoreRefusedHint: a.storeRefusedHint,
	}, a.tenants)
	if err != nil {
		return err
	}
	// Stop fetching, let the requests under way finish (the caller's
	// context or ShutdownTimeout, whichever ends first), then cancel them.
	// The other replicas are told first, and take this one's tenants
	// meanwhile.
	a.life.addCallerBound("worker", func(ctx context.Context) error {
		wctx, cancel := context.WithTimeout(ctx, a.opts.ShutdownTimeout)
		defer cancel()
		// Told whatever the caller's context says (a second signal at
		// once): Leave bounds its own write.
		if err := presence.Leave(context.WithoutCancel(ctx)); err != nil {
			a.log.Warn("announce that this replica stops: its tenants move when its announcement is withdrawn", zap.Error(err))
		}
		err := a.worker.Stop(wctx)
		if errors.Is(err, worker.ErrCancelled) {
			// A stop as asked: each request cancelled is back in the
			// stream, unacked, and its ledger entry keeps its next
			// delivery from a second action.
			a.log.Warn("requests still under way at the stop were cancelled: they come back from the stream", zap.Error(err))
			return nil
		}
		return err
	})
	// The feed starts after the worker made its tenants, so none of their
	// journal entries is missed; no call starts before it has caught up.
	if a.follow, err = queue.FollowQuota(ctx, a.js, a.opts.Queue.Subjects, a.shared, a.quotaBack(), a.log); err != nil {
		return err
	}
	return a.startBudgetFeed(ctx)
}

// startPresence announces this replica's tenants and follows the other
// replicas' announcements; it returns once it knows them all. It stops
// after the worker, so other replicas go on counting on this one until its
// requests under way are finished.
func (a *App) startPresence(ctx context.Context) (*queue.Presence, error) {
	id := a.opts.ReplicaID
	if id == "" {
		id = replicaID()
	}
	a.replicaID = id
	apps, guards := map[string]string{}, map[string]string{}
	for _, t := range a.tenants {
		apps[t.Config.Name] = queue.AppDigest(t.Config.TenantID, t.Config.ClientID)
		guards[t.Config.Name] = config.GuardsDigest(&t.Config.Guards)
	}
	p, err := queue.NewPresence(ctx, a.js, queue.PresenceOptions{
		ID: id, Tenants: a.opts.Queue.Tenants, Apps: apps, Guards: guards, Beat: a.opts.PresenceBeat,
		Bucket: a.opts.Queue.Presence(), NoSetup: a.opts.NoSetup, Clock: a.opts.Clock, Logger: a.log,
		// A replica whose clock is off makes no call, nor does one that
		// has not read the quota and budget journals yet (a start; the
		// budget journal's day of history may take longer), nor one
		// whose quota or budget journal was made anew under it (until it
		// is restarted; without the budget journal no slot is taken, so
		// no call of a tenant with a budget goes out): its tenants go to
		// the others meanwhile.
		Aside: func() bool {
			return a.shared.ClockOff() || !a.shared.CaughtUp() || !a.budget.CaughtUp() ||
				a.shared.Remade() || a.budget.Remade()
		},
	})
	if err != nil {
		return nil, err
	}
	if err := a.runService(ctx, "presence", p.Run, p.Current()); err != nil {
		return nil, err
	}
	a.presence.Store(p)
	if err := a.answerGuards(); err != nil {
		return nil, fmt.Errorf("answer guards requests: %w", err)
	}
	return p, nil
}

// startControl follows the operators' controls; it returns once it knows
// those in force, so a restarted replica takes nothing a pause holds.
func (a *App) startControl(ctx context.Context) (*control.Watcher, error) {
	w, err := control.NewWatcher(ctx, a.js, a.log)
	if err != nil {
		return nil, err
	}
	if err := a.runService(ctx, "control", w.Run, w.Current()); err != nil {
		return nil, err
	}
	return w, nil
}

// runService runs a service until Stop reaches its cleanup, and waits
// until it is current. The service's end is a closed channel, not a value
// sent: a service that fails while the start waits for it (NATS refusing
// its first write) has ended for the cleanup too, which the start's
// failure runs at once; a value taken by the start left the cleanup
// waiting for the whole stop limit.
func (a *App) runService(ctx context.Context, name string, run func(context.Context) error, current <-chan struct{}) error {
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(sctx)
	}()
	a.life.add(name, func(ctx context.Context) error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	select {
	case <-current:
		return nil
	case <-done:
		return fmt.Errorf("%s: %w", name, runErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replicaID names this process among the replicas: host, process id and
// a random part, in the characters a KV key allows.
func replicaID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if replicaIDRune(r) {
			return r
		}
		return '_'
	}, host)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), nuid.Next())
}

// validReplicaID says whether a configured replica id is a plain name: it
// is a key of the presence bucket.
func validReplicaID(id string) bool {
	return len(id) <= 64 && id != "" && !strings.ContainsFunc(id, func(r rune) bool { return !replicaIDRune(r) })
}

func replicaIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// NATSURL is the URL of the NATS server in use.
func (a *App) NATSURL() string { return a.nc.ConnectedUrl() }

// Stop shuts down in order: stop fetching, let requests under way finish
// (cancelled when ctx ends or after ShutdownTimeout), write the quota
// journal's last entries, close the HTTP server, drain NATS, stop the
// embedded server. It returns at the latest ShutdownTimeout + 15s after it
// was called, whatever ctx does. Requests it cancelled go back to the
// stream: a warning in the log, not an error. A Stop while Start is under
// way ends the start (Start answers ErrStopped) and stops what it brought
// up; after a Stop, Start starts nothing. It is idempotent.
func (a *App) Stop(ctx context.Context) error {
	a.stopping.Store(true)
	limit := a.stopLimit()
	began := time.Now() // real time: bounds a shutdown, not logic
	// A start under way ends first: the parts it still brings up would
	// otherwise be left out of the steps below.
	a.haltStart(began.Add(limit))
	return a.life.stop(ctx, max(limit-time.Since(began), time.Millisecond))
}

// stopLimit is Stop's time cap. Capped: a timeout near the longest
// duration (for ever) must not wrap round to a cap already passed.
func (a *App) stopLimit() time.Duration {
	return addCapped(a.opts.ShutdownTimeout, StopReserve)
}
