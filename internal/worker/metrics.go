package worker

import (
	"math"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/buildinfo"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Metrics are the worker's Prometheus metrics. Label values are bounded:
// tenants are configured names (queue.UnknownTenant stands for the rest),
// APIs, outcomes and codes are fixed lists.
//
// A replica may serve a thousand tenants, so a series per tenant costs a
// thousand series: the tenant label is kept where someone on call acts on
// one tenant (its backlog, its quota, its 429s, its failures), and left off
// the histograms, which answer "is the API or the worker slow" for all
// tenants at once (README, Metrics).
type Metrics struct {
	RequestsReceived counterVec               // tenant, priority
	Results          counterVec               // tenant, outcome, code
	APICalls         counterVec               // tenant, api, status
	APILatency       *prometheus.HistogramVec // api
	LimiterWait      *prometheus.HistogramVec // api
	QuotaRemaining   gaugeVec                 // tenant, api, window
	QuotaLimit       gaugeVec                 // tenant, api, window
	Throttled        counterVec               // tenant, api
	ThrottledUntil   gaugeVec                 // tenant
	Backlog          gaugeVec                 // tenant, priority
	OldestWaiting    gaugeVec                 // tenant, priority
	RequestToResult  *prometheus.HistogramVec // priority, outcome
	InFlight         gaugeVec                 // tenant
	Retries          *prometheus.CounterVec   // api, reason
	Blocked          counterVec               // tenant, rule
	TokenFailures    counterVec               // tenant, reason (mde.TokenFailureReasons)
	TrackedActions   gaugeVec                 // tenant
	TrackingLag      gaugeVec                 // tenant
	Assigned         gaugeVec                 // tenant
	TenantPaused     gaugeVec                 // tenant, priority
	HeldRequests     gaugeVec                 // tenant, reason (HeldPause, HeldBudget)
	BudgetRemaining  gaugeVec                 // tenant
}

// Reasons a request waits in the stream, as mde_offboard_held_requests
// labels them.
const (
	HeldPause  = "pause"  // an operator paused its tenant and priority
	HeldBudget = "budget" // its tenant's budget is spent
)

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "mde_offboard"
	m := &Metrics{
		RequestsReceived: newCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_received_total",
			Help: "Offboard requests taken from the stream, redeliveries included.",
		}, []string{"tenant", "priority"}),
		Results: newCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "results_total",
			Help: "Results published, by outcome and failure code (empty unless failed); every failed one is also a dead letter.",
		}, []string{"tenant", "outcome", "code"}),
		APICalls: newCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "api_calls_total",
			Help: "Calls to the Defender API by HTTP status (\"error\" when no answer came).",
		}, []string{"tenant", "api", "status"}),
		APILatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "api_call_duration_seconds",
			Help:    "Time from sending a Defender API call to its answer, all tenants.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}, []string{"api"}),
		LimiterWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "limiter_wait_seconds",
			Help:    "Time a call waited for quota, all tenants.",
			Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600},
		}, []string{"api"}),
		QuotaRemaining: newGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "quota_remaining_calls",
			Help: "Calls that could start now in each sliding window of each API.",
		}, []string{"tenant", "api", "window"}),
		QuotaLimit: newGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "quota_limit_calls",
			Help: "Configured calls allowed in each sliding window of each API.",
		}, []string{"tenant", "api", "window"}),
		Backlog: newGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "backlog_requests",
			Help: "Requests waiting in the stream, by tenant and priority.",
		}, []string{"tenant", "priority"}),
		InFlight: newGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "in_flight_requests",
			Help: "Requests taken from the stream and not yet resulted.",
		}, []string{"tenant"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "api_retries_total",
			Help: "Calls repeated after a retryable answer, by reason, all tenants.",
		}, []string{"api", "reason"}),
		Blocked: newCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "blocked_total",
			Help: "Devices a guard, or a request's notSeenSince, refused to offboard (blocked_by_policy), by the rule that refused.",
		}, []string{"tenant", "rule"}),
	}
	m.initRetries()
	m.addLatency()
	m.addTracking()
	m.addControlMetrics(ns)
	m.addCallsHeld(ns)
	reg.MustRegister(m.RequestsReceived, m.Results, m.APICalls, m.APILatency, m.LimiterWait, m.QuotaRemaining,
		m.QuotaLimit, m.Throttled, m.Backlog, m.InFlight, m.Retries, m.Blocked, m.OldestWaiting, m.RequestToResult,
		m.TrackedActions, m.TrackingLag, buildInfo(), m.TenantPaused, m.HeldRequests, m.BudgetRemaining, m.Assigned,
		m.TokenFailures, m.ThrottledUntil)
	return m
}

// addCallsHeld creates the metrics of calls the API or the login host
// held back: 429 answers and their pauses, calls sent without a token.
func (m *Metrics) addCallsHeld(ns string) {
	m.Throttled = newCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "throttled_total",
		Help: "429 answers; each pauses the tenant for its Retry-After.",
	}, []string{"tenant", "api"})
	m.ThrottledUntil = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "throttled_until_timestamp_seconds",
		Help: "When the tenant's latest 429 pause ends or ended (Unix time), this replica's or another's from the quota journal; 0 before any.",
	}, []string{"tenant"})
	m.TokenFailures = newCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "token_failures_total",
		Help: "API calls not sent because no token could be had, by reason; whatever made the call (a request, action tracking, a plan).",
	}, []string{"tenant", "reason"})
}

// addLatency creates the metrics of how long requests wait: the oldest
// waiting one per tenant, and publication to result for all tenants.
func (m *Metrics) addLatency() {
	const ns = "mde_offboard"
	m.OldestWaiting = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "oldest_waiting_seconds",
		Help: "Age of the oldest request not answered yet (0: none), by tenant and priority: waiting in the stream, under way, or handed back for a later redelivery.",
	}, []string{"tenant", "priority"})
	m.RequestToResult = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Name: "request_to_result_seconds",
		Help:    "Time from a request's publication to its result, all tenants.",
		Buckets: []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	}, []string{"priority", "outcome"})
}

// buildInfo is mde_offboard_build_info: 1, with the version and revision
// the binary was built from.
func buildInfo() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mde_offboard", Name: "build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// addControlMetrics creates the metrics of pauses and budgets.
func (m *Metrics) addControlMetrics(ns string) {
	m.TenantPaused = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "tenant_paused",
		Help: "1 while an operator has paused the tenant's priority (offboardctl pause), else 0.",
	}, []string{"tenant", "priority"})
	m.HeldRequests = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "held_requests",
		Help: "Requests waiting because of a pause or a spent budget: in the stream, and those fetched and waiting in a worker.",
	}, []string{"tenant", "reason"})
	m.BudgetRemaining = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "budget_remaining",
		Help: "Devices the tenant's budget still allows in its window; NaN while no budget is counted.",
	}, []string{"tenant"})
}

// initRetries creates every API and reason a call is made again for at
// zero: a panel and a rate() see the first repeat after a start (24
// series, all tenants together).
func (m *Metrics) initRetries() {
	for _, api := range mde.APIs {
		for _, r := range retryReasons {
			m.Retries.WithLabelValues(api, r.String())
		}
	}
}

// retryReasons are the answers after which a call is made again
// (mde_offboard_api_retries_total's reasons).
var retryReasons = []mde.Reason{
	mde.ReasonNetwork, mde.ReasonTimeout, mde.ReasonServerError, mde.ReasonNotFound,
	mde.ReasonThrottled, mde.ReasonToken, mde.ReasonUnauthorized, mde.ReasonForbidden,
}

// initTenant creates a tenant's series at zero, so that the first event
// after a start shows in rate() and increase() (a token refused to a
// tracker's look included). Failure codes are left to
// their first result: thirteen series a tenant that are nearly always zero
// (the alerts on them also fire on a series that just appeared).
func (m *Metrics) initTenant(name string, windows map[string][]limiter.Window) {
	for _, api := range mde.APIs {
		m.Throttled.WithLabelValues(name, api)
		ws := windows[api]
		for _, i := range shownWindows(ws) {
			m.QuotaLimit.WithLabelValues(name, api, ws[i].Label()).Set(float64(ws[i].Count))
			m.QuotaRemaining.WithLabelValues(name, api, ws[i].Label()).Set(float64(ws[i].Count))
		}
	}
	for _, outcome := range []string{offboard.OutcomeCreated, offboard.OutcomeAlreadyPending, offboard.OutcomeDryRun} {
		m.Results.WithLabelValues(name, outcome, "")
	}
	for _, p := range []string{string(offboard.Normal), string(offboard.Bulk)} {
		m.RequestsReceived.WithLabelValues(name, p)
		m.Backlog.WithLabelValues(name, p)
		m.OldestWaiting.WithLabelValues(name, p)
		m.TenantPaused.WithLabelValues(name, p)
	}
	m.HeldRequests.WithLabelValues(name, HeldPause)
	m.HeldRequests.WithLabelValues(name, HeldBudget)
	m.BudgetRemaining.WithLabelValues(name).Set(math.NaN())
	m.InFlight.WithLabelValues(name)
	m.Assigned.WithLabelValues(name)
	m.ThrottledUntil.WithLabelValues(name)
	for _, rule := range offboard.Rules {
		m.Blocked.WithLabelValues(name, rule)
	}
	for _, reason := range mde.TokenFailureReasons {
		m.TokenFailures.WithLabelValues(name, reason)
	}
}

// setThrottledUntil shows when a tenant's 429 pause ends: the alerts
// keep MdeOffboardThrottled on, and MdeOffboardBacklogNotDraining quiet,
// while the API's own pause holds the tenant's requests.
func (m *Metrics) setThrottledUntil(name string, until time.Time) {
	if until.IsZero() {
		return
	}
	m.ThrottledUntil.WithLabelValues(name).Set(float64(until.UnixNano()) / 1e9)
}

// shownWindows are the places in ws of the windows the quota gauges show,
// one for each window label. Two limits of one length share a label and
// so a series: the tighter (the smaller count) alone decides when a call
// may start, and is shown; written one after the other, the last took the
// series, a looser limit with calls left while none could start.
func shownWindows(ws []limiter.Window) []int {
	var out []int
	for i, w := range ws {
		shown := true
		for j, o := range ws {
			if j != i && o.Length == w.Length && (o.Count < w.Count || o.Count == w.Count && j < i) {
				shown = false
				break
			}
		}
		if shown {
			out = append(out, i)
		}
	}
	return out
}

// addTracking creates the action tracking's gauges, which a tracker sets
// for its tenant, and the assignment's gauge (see Assignment).
func (m *Metrics) addTracking() {
	const ns = "mde_offboard"
	m.TrackedActions = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "tracked_actions",
		Help: "Machine Actions followed until they finish (tenants with tracking on).",
	}, []string{"tenant"})
	m.TrackingLag = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "tracking_lag_seconds",
		Help: "How overdue the most overdue look at a followed action is.",
	}, []string{"tenant"})
	m.Assigned = newGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "tenant_assigned",
		Help: "1 while this replica takes the tenant's requests; the tenants are spread across the replicas.",
	}, []string{"tenant"})
}
