package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func init() { commands = append(commands, statusCommand) }

// tenantStatus is one tenant's line of offboardctl status; its JSON form
// is the machine output.
type tenantStatus struct {
	Tenant string                       `json:"tenant"`
	Paused map[offboard.Priority]bool   `json:"paused"`
	Pauses map[offboard.Priority]pauseB `json:"pauses,omitempty"` // who paused or resumed, and why
	Budget budgetStatus                 `json:"budget"`
	// Quota is the offboard API's windows: calls left in each now.
	Quota         []windowStatus               `json:"quota"`
	LimitsDefault bool                         `json:"limitsDefault,omitempty"` // the consumers record no limits: the documented defaults shown
	ThrottledTill *time.Time                   `json:"throttledUntil,omitempty"`
	Backlog       map[offboard.Priority]uint64 `json:"backlog"`
	// MissingConsumers are the priorities whose consumer is gone (a
	// worker makes it again): their backlog is not known, and left out.
	MissingConsumers []offboard.Priority             `json:"missingConsumers,omitempty"`
	OldestWaiting    map[offboard.Priority]time.Time `json:"oldestWaiting,omitempty"`
	OldestAge        map[offboard.Priority]float64   `json:"oldestAgeSeconds,omitempty"`
	// InFlight is the priorities not paused' requests fetched and not
	// answered yet.
	InFlight uint64 `json:"inFlight"`
	// ETA is how long the backlog of the priorities not paused takes at
	// the quota's pace, less the requests a campaign's cancel withdraws
	// (answered without a call); nil when everything waiting is paused.
	ETA *float64 `json:"etaSeconds"`
	// ETAByBudget says the budget, not the quota, sets the ETA.
	ETAByBudget bool `json:"etaByBudget,omitempty"`
	// Held is the backlog held by a pause: the paused priorities'
	// requests, those fetched before the pause and handed back included.
	Held uint64 `json:"heldByPause"`
	// HeldByBudget is the backlog in the stream, of the priorities not
	// paused, held by a budget with nothing left (those fetched already
	// count in InFlight).
	HeldByBudget uint64 `json:"heldByBudget"`
	// LastAnnounced is when a worker replica that serves the tenant last
	// announced itself (every 5 s while it runs), by the server's clock;
	// NoWorker says none has for noWorkerAfter, or ever: nothing works
	// the backlog, and the ETA is what it takes once one runs. Both are
	// unset when the presence bucket cannot be read.
	LastAnnounced *time.Time `json:"lastAnnounced,omitempty"`
	NoWorker      bool       `json:"noWorker,omitempty"`
	// notSetUp: no worker has set the tenant up (every consumer
	// missing); it is shown for its controls in force. noneSetUp: no
	// tenant has consumers at all, so the tenant cannot be checked.
	notSetUp, noneSetUp bool
}

// noWorkerAfter is how long without an announcement status takes a
// tenant for served by no worker: four times the time an announcement
// counts among replicas (queue.PresenceTTL), as the server's clock and
// this machine's are compared.
const noWorkerAfter = 4 * queue.PresenceTTL

// readAnnounced reads when each tenant was last announced; nil when the
// presence bucket cannot be read (missing, or not readable with this
// credential): status then says nothing of the workers.
func readAnnounced(ctx context.Context, js jetstream.JetStream) map[string]time.Time {
	last, err := queue.LastAnnounced(ctx, js)
	if err != nil {
		return nil
	}
	return last
}

// setWorkers fills what status says of the workers serving the tenant.
func (st *tenantStatus) setWorkers(announced map[string]time.Time, now time.Time) {
	st.LastAnnounced, st.NoWorker = workersOf(announced, st.Tenant, now)
}

// workersOf is when a worker replica last announced tenant (nil: never),
// and whether none has for noWorkerAfter, or ever; nil and false when
// announced is not known (readAnnounced).
func workersOf(announced map[string]time.Time, tenant string, now time.Time) (last *time.Time, none bool) {
	if announced == nil {
		return nil, false
	}
	at, ok := announced[tenant]
	if ok {
		at = at.UTC()
		last = &at
	}
	return last, !ok || now.Sub(at) > noWorkerAfter
}

type pauseB struct {
	Paused bool      `json:"paused"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// budgetStatus is the tenant's budget. Used and Left are nil without a
// budget.
type budgetStatus struct {
	InForce  string `json:"inForce,omitempty"` // the override, else the tenants file's; empty: none
	Override string `json:"override,omitempty"`
	// Ignored says why the worker does not apply the override; empty: it
	// does.
	Ignored string `json:"overrideIgnored,omitempty"`
	By      string `json:"by,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// FileNotKnown says the tenant's consumers do not record the tenants
	// file's budget (made from deploy/nats for a worker under
	// --no-setup): with no override in force, the budget is not known.
	FileNotKnown bool `json:"fileNotKnown,omitempty"`
	Used         *int `json:"used"`
	Left         *int `json:"left"`
}

type windowStatus struct {
	Window string `json:"window"` // "100/1m0s"
	Limit  int    `json:"limit"`
	Used   int    `json:"used"`
	Left   int    `json:"left"`
}

// budgetAPI names the budget's slots in the budget journal (the worker's
// internal/worker/budget.go).
const budgetAPI = "created"

// budgetSlack is read from the budget journal beyond the budget's window:
// a slot counts until its outcome, at the latest its lease (2 h) later.
const budgetSlack = queue.BudgetLease + time.Minute

// budgetHorizon is the longest budget window the budget journal can count.
type budgetHorizon struct {
	history, longest time.Duration
	limited          bool // false: the stream keeps entries forever
}

// readBudgetHorizon reads the budget stream's MaxAge, which the worker
// sets to its --budget-history, and applies the worker's rule with its
// default --quota-margin (queue.BudgetHorizon).
func readBudgetHorizon(ctx context.Context, js jetstream.JetStream) (budgetHorizon, error) {
	stream, err := js.Stream(ctx, offboard.StreamBudget)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return budgetHorizon{}, fmt.Errorf("stream %s does not exist (start a worker, or apply deploy/nats)", offboard.StreamBudget)
	}
	if err != nil {
		return budgetHorizon{}, fmt.Errorf("stream %s: %w", offboard.StreamBudget, err)
	}
	age := stream.CachedInfo().Config.MaxAge
	if age <= 0 {
		return budgetHorizon{}, nil
	}
	return budgetHorizon{history: age, longest: queue.BudgetHorizon(age, queue.DefaultQuotaMargin), limited: true}, nil
}

// counts says whether the worker counts (and so applies) a budget.
func (h budgetHorizon) counts(w limiter.Window) bool { return !h.limited || w.Length <= h.longest }

func statusCommand(c *cli) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [TENANT]",
		Short: "Show each tenant's pauses, budget, quota left, backlog, oldest waiting request, in flight and ETA",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := ""
			if len(args) == 1 {
				if err := checkTenantArg(args[0]); err != nil {
					return err
				}
				tenant = args[0]
			}
			sts, err := c.status(cmd.Context(), tenant, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, sts)
			}
			printTable(c.stdout, sts, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine output: a JSON array, one object per tenant")
	return cmd
}

// statusLimit is how long status may take: four times the connect
// timeout, or the longest duration there is where that product would
// wrap around to a negative one (a --connect-timeout over 640511h).
func statusLimit(connect time.Duration) time.Duration {
	if connect > math.MaxInt64/4 {
		return math.MaxInt64
	}
	return 4 * connect
}

// tenantConsumers are a tenant's two request consumers' states.
type tenantConsumers struct {
	meta map[string]string
	info map[offboard.Priority]*jetstream.ConsumerInfo
	// notSetUp: the tenant has no consumer at all, only controls in
	// force; noneSetUp: no tenant has any (knownTenant).
	notSetUp, noneSetUp bool
}

// status gathers the status of one tenant, or of every tenant whose
// consumers exist.
func (c *cli) status(ctx context.Context, tenant string, now time.Time) ([]tenantStatus, error) {
	js, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, statusLimit(c.timeout))
	defer cancel()
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", offboard.StreamRequests, err)
	}
	tenants, err := listTenants(ctx, stream)
	if err != nil {
		return nil, err
	}
	view, horizon, err := readControls(ctx, js, c.subjects)
	if err != nil {
		return nil, err
	}
	names, err := shownTenants(tenants, view, tenant)
	if err != nil {
		return nil, err
	}
	r := &statusRead{stream: stream, view: view, horizon: horizon, journals: &statusJournals{js: js, subjects: c.subjects}, now: now,
		announced: readAnnounced(ctx, js), cancels: readCancels(ctx, js)}
	if tenant == "" {
		if err := r.journals.readAll(ctx, tenants, view, horizon, now); err != nil {
			return nil, err
		}
	}
	// Several tenants at a time: a tenant's oldest requests are a round
	// trip to the server each.
	out := make([]tenantStatus, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statusReaders)
	for i, name := range names {
		g.Go(func() (err error) {
			out[i], err = r.tenantStatus(gctx, name, tenants[name])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// shownTenants adds to tenants those shown for their controls alone, and
// names the ones status shows: tenant, or every one when it is "".
func shownTenants(tenants map[string]*tenantConsumers, view *control.View, tenant string) ([]string, error) {
	// A tenant no worker has set up yet may have controls in force
	// (--unknown-tenant, for a tenant about to be added): shown, as the
	// command that set them said, without consumers. With no tenant's
	// consumers at all (a lone NATS server restarted loses them until a
	// worker makes them again), it is no more a typo than any other.
	noneSetUp := len(tenants) == 0
	for _, name := range view.Tenants() {
		if tenants[name] == nil && offboard.TenantName.MatchString(name) {
			tenants[name] = &tenantConsumers{notSetUp: true, noneSetUp: noneSetUp}
		}
	}
	names := make([]string, 0, len(tenants))
	for name := range tenants {
		if tenant == "" || name == tenant {
			names = append(names, name)
		}
	}
	switch {
	case tenant != "" && len(names) == 0 && noneSetUp:
		return nil, fmt.Errorf("tenant %s cannot be checked: no worker has set up any tenant's consumers (start a worker; a lone NATS server restarted loses them until one runs)", tenant)
	case tenant != "" && len(names) == 0:
		return nil, fmt.Errorf("tenant %s: no worker has set up its consumers (not in any tenants file)", tenant)
	case len(names) == 0:
		// A lone server restarted loses them (kept in memory) until a
		// worker makes them again; the requests wait all the same.
		return nil, errors.New("no worker has set up any tenant's consumers: no tenant to show (start a worker; a lone NATS server restarted loses them until one runs)")
	}
	slices.Sort(names)
	return names, nil
}

// statusReaders is how many tenants status reads at a time, and how many
// goroutines decode the journals' entries.
const statusReaders = 8

// listTenants finds the tenants by their consumers' metadata. Only the
// worker's own consumers count, each named for the tenant and priority its
// metadata gives: one made by hand with the same metadata (a copy to look
// at the requests, or one whose tenant would forge status's lines) names
// no tenant and stands in for none of a tenant's consumers.
func listTenants(ctx context.Context, stream jetstream.Stream) (map[string]*tenantConsumers, error) {
	tenants := map[string]*tenantConsumers{}
	infos := stream.ListConsumers(ctx)
	for info := range infos.Info() {
		t, ours := info.Config.Metadata[queue.MetaTenant]
		p := offboard.Priority(info.Config.Metadata[queue.MetaPriority])
		if !ours || !offboard.TenantName.MatchString(t) || (p != offboard.Normal && p != offboard.Bulk) ||
			info.Name != queue.ConsumerName(t, p) {
			continue
		}
		tc := tenants[t]
		if tc == nil {
			tc = &tenantConsumers{meta: info.Config.Metadata, info: map[offboard.Priority]*jetstream.ConsumerInfo{}}
			tenants[t] = tc
		}
		tc.info[p] = info
	}
	if err := infos.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", offboard.StreamRequests, err)
	}
	return tenants, nil
}

// statusRead is what status reads each tenant's status from.
type statusRead struct {
	stream   jetstream.Stream // the request stream
	view     *control.View
	horizon  budgetHorizon
	journals *statusJournals
	now      time.Time
	// announced is when each tenant was last announced by a worker
	// (readAnnounced); nil when not known.
	announced map[string]time.Time
	// cancels are the campaigns' cancel marks in force; nil without the
	// control bucket.
	cancels *campaign.Watcher
}

// tenantStatus gathers one tenant's status.
func (r *statusRead) tenantStatus(ctx context.Context, name string, tc *tenantConsumers) (tenantStatus, error) {
	view, now := r.view, r.now
	st := tenantStatus{
		Tenant: name, Paused: map[offboard.Priority]bool{}, Pauses: map[offboard.Priority]pauseB{},
		Backlog: map[offboard.Priority]uint64{}, OldestWaiting: map[offboard.Priority]time.Time{}, OldestAge: map[offboard.Priority]float64{},
	}
	st.setWorkers(r.announced, now)
	st.notSetUp, st.noneSetUp = tc.notSetUp, tc.noneSetUp
	served := r.readBacklog(ctx, name, tc, &st)
	// What the worker answers cancelled takes neither quota nor budget.
	toCall := max(served-r.withdrawnWaiting(ctx, name, tc, &st), 0)
	pace, err := readBudgetStatus(ctx, r.journals, name, tc.meta, view, r.horizon, now, &st)
	if err != nil {
		return st, err
	}
	if st.Budget.Left != nil && *st.Budget.Left == 0 {
		st.HeldByBudget = uint64(served) //nolint:gosec // not negative
	}
	ws, def := tenantWindows(tc.meta)
	st.LimitsDefault = def
	calls, paused, err := r.journals.offboardCalls(ctx, name, ws, now)
	if err != nil {
		return st, err
	}
	if paused.After(now) {
		st.ThrottledTill = &paused
	}
	for i, left := range callsLeft(ws, calls, now) {
		st.Quota = append(st.Quota, windowStatus{Window: ws[i].String(), Limit: ws[i].Count, Used: ws[i].Count - left, Left: left})
	}
	// Paused is the ETA only when everything waiting is held: requests of
	// a priority not paused that are fetched (in flight, waiting in the
	// worker for a budget slot, say) are worked all the same.
	if served > 0 || st.InFlight > 0 || st.Held == 0 {
		var d time.Duration
		if toCall > 0 || st.InFlight > 0 {
			// A 429's pause holds what waits or is in flight, not nothing;
			// so does a full window, for a request in flight whose call
			// has not gone out.
			inFlight := int(min(st.InFlight, 1<<40)) //nolint:gosec // bounded
			d = quotaETA(ws, calls, paused, toCall+inFlightToCall(calls, inFlight, now), now)
		}
		if pace != nil {
			// Each request waiting creates an action at most, and so does
			// each in flight (fetched, waiting in the worker for a slot):
			// the budget holds them to its own pace.
			if b := pace.eta(toCall, int(min(st.InFlight, 1<<40)), now); b > d { //nolint:gosec // bounded
				d, st.ETAByBudget = b, true
			}
		}
		secs := d.Seconds()
		st.ETA = &secs
	}
	return st, nil
}

// readBacklog fills the tenant's pauses and backlog by priority, and
// returns the requests waiting in the stream of the priorities not
// paused.
func (r *statusRead) readBacklog(ctx context.Context, name string, tc *tenantConsumers, st *tenantStatus) (served int) {
	stream, view, now := r.stream, r.view, r.now
	for _, p := range control.Priorities {
		st.Paused[p] = view.Paused(name, p)
		if e, ok := view.Pause(name, p); ok {
			st.Pauses[p] = pauseB{Paused: e.Paused, By: e.By, Reason: e.Reason, At: e.At}
		}
		info := tc.info[p]
		if info == nil {
			st.MissingConsumers = append(st.MissingConsumers, p)
			continue
		}
		acked := uint64(max(info.NumAckPending, 0)) //nolint:gosec // not negative
		st.Backlog[p] = info.NumPending + acked
		if st.Paused[p] {
			// A pause hands the requests fetched and waiting in the worker
			// back to the stream, where the server counts them delivered
			// until a redelivery the paused worker does not ask for: held
			// as those never fetched are (a call under way when the pause
			// landed finishes).
			st.Held += info.NumPending + acked
		} else {
			st.InFlight += acked
			served += int(min(info.NumPending, 1<<40)) //nolint:gosec // bounded
		}
		if oldest, err := queue.OldestUnanswered(ctx, stream, info); err == nil && !oldest.IsZero() {
			st.OldestWaiting[p] = oldest.UTC()
			// The server's time against this machine's: a clock behind
			// the server's would make a request just published younger
			// than nothing. At least 0, as the worker's gauge reads it.
			st.OldestAge[p] = max(now.Sub(oldest).Seconds(), 0)
		}
	}
	return served
}

// withdrawnWaiting counts the requests waiting in the stream, of the
// priorities not paused, that a campaign's cancel withdraws: the worker
// answers each cancelled, without a call, when it takes it.
func (r *statusRead) withdrawnWaiting(ctx context.Context, name string, tc *tenantConsumers, st *tenantStatus) int {
	n := 0
	for _, p := range control.Priorities {
		if !st.Paused[p] {
			n += withdrawn(ctx, r.journals.js, r.cancels, name, tc.info[p], "")
		}
	}
	return n
}

// withdrawn counts the requests of a tenant's consumer (info) not handed
// out yet that a campaign's cancel withdraws, those of campaign except
// left out (it may be ""): the worker answers each cancelled, without a
// call, when it takes it, asking the cancel marks as
// campaign.Watcher.Cancelled answers here. Only a tenant with a cancel
// mark in force has its waiting requests read: those the consumer has
// not handed out yet, which its NumPending counts, up to
// withdrawnReadCap: a campaign of a million rows must not hold a status
// past its time limit. The rest, and a read cut short, count as calls:
// an ETA errs long.
func withdrawn(ctx context.Context, js jetstream.JetStream, cancels *campaign.Watcher, tenant string, info *jetstream.ConsumerInfo, except string) int {
	if cancels == nil || info == nil || info.NumPending == 0 || info.Config.FilterSubject == "" || !cancels.HasCancels(tenant) {
		return 0
	}
	n := 0
	_ = scanFromSeq(ctx, js, offboard.StreamRequests, info.Config.FilterSubject, info.Delivered.Stream+1, min(info.NumPending, withdrawnReadCap), func(m jetstream.Msg) {
		req, err := offboard.ParseRequest(m.Data(), tenant)
		if err != nil {
			return // answered invalid_request without a call, yet left in: the ETA errs long
		}
		var stored time.Time
		if meta, err := m.Metadata(); err == nil && req.AttemptOrFirst() == 1 {
			// A retry of a request answered cancelled was the
			// campaign's whenever stored: a time of zero, as the
			// worker takes it.
			stored = meta.Timestamp
		}
		if name, ok := cancels.Cancelled(tenant, req, stored); ok && name != except {
			n++
		}
	})
	return n
}

// withdrawnReadCap is how many waiting requests of a consumer status
// reads at most for a campaign's cancel (withdrawn).
const withdrawnReadCap = 50_000

// addCapped is a+b (neither below zero), held to the longest duration
// there is rather than wrapped around to below zero.
func addCapped(a, b time.Duration) time.Duration { return min(a, math.MaxInt64-b) + b }

// readBudgetStatus reads the budget in force (budgetInForce) and the slots
// counted against it.
func readBudgetStatus(ctx context.Context, journals *statusJournals, name string, meta map[string]string, view *control.View, h budgetHorizon, now time.Time, st *tenantStatus) (*budgetPace, error) {
	budget, bs := budgetInForce(name, meta, view, h)
	st.Budget = bs
	w, slots, ok, err := journals.budgetSlots(ctx, name, budget, h, now)
	if err != nil || !ok {
		return nil, err
	}
	used, underWay := 0, 0
	for _, at := range slots {
		if at.After(now.Add(-w.Length)) {
			used++
		}
		if at.Equal(now) { // budgetSlots counts a slot under way as used now
			underWay++
		}
	}
	left := max(w.Count-used, 0)
	st.Budget.Used, st.Budget.Left = &used, &left
	return &budgetPace{w, slots, underWay}, nil
}

// budgetInForce is the budget in force as the worker chooses it: the
// override, unless the worker ignores it (unreadable, or a window longer
// than the budget journal counts), else the tenants file's; with how
// status shows it.
func budgetInForce(name string, meta map[string]string, view *control.View, h budgetHorizon) (string, budgetStatus) {
	var st budgetStatus
	budget := meta[queue.MetaBudget]
	if e, ok := view.Budget(name); ok {
		// Not quoted when it is no budget, as the worker logs it: a
		// secret pasted there is shown to nobody.
		st = budgetStatus{Override: control.ShownBudget(e.Value), By: e.By, Reason: e.Reason}
		switch w, err := limiter.ParseWindow(e.Value); {
		case err != nil:
			st.Ignored = "not a budget"
		case !h.counts(w):
			st.Ignored = fmt.Sprintf("its window is longer than %s, the longest the budget journal counts", h.longest)
		default:
			budget = e.Value
		}
	}
	st.InForce = budget
	// A budget is recorded only when the file sets one: its absence says
	// "none" only on consumers the worker made itself, which record the
	// limits too. Set after the override's entry, which an override the
	// worker ignores leaves the file's budget to.
	st.FileNotKnown = budget == "" && !fileBudgetRecorded(meta)
	if w, err := limiter.ParseWindow(budget); err == nil {
		// One way, as an override is stored: the tenants file's, as the
		// worker records it, reads 500/24h0m0s.
		st.InForce = w.Spec()
	}
	return budget, st
}

// fileBudgetRecorded says whether the tenant's consumers record the
// tenants file's budget, or its absence: the worker's own setup records
// the tenant's offboard limits always, and the budget when the file sets
// one. Consumers made from deploy/nats (a worker under --no-setup), or
// none at all, record neither, and the file may set a budget the worker
// applies.
func fileBudgetRecorded(meta map[string]string) bool {
	return meta[queue.MetaLimits] != "" || meta[queue.MetaBudget] != ""
}

// budgetPace is a budget in force and the slots already counted against
// it: what the ETA must wait for besides the quota.
type budgetPace struct {
	window limiter.Window
	slots  []time.Time
	// underWay is the slots of calls under way (or of a process that
	// died, until their lease): their requests, in flight, need no other
	// slot.
	underWay int
}

// eta is how long until the budget has let the requests waiting in the
// stream and those in flight (fetched, most waiting in the worker for a
// slot) create their action, each counted as one, after the slots
// already counted: those in flight less the slots under way, which
// belong to some of them.
func (p *budgetPace) eta(waiting, inFlight int, now time.Time) time.Duration {
	return eta([]limiter.Window{p.window}, p.slots, waiting+max(inFlight-p.underWay, 0), now)
}

// tenantBudget reads the tenant's budget in force as status does (the
// override in view unless the worker ignores it, else the tenants file's
// recorded in its consumers' metadata) with the slots counted against
// it; nil without a budget.
func (c *cli) tenantBudget(ctx context.Context, js jetstream.JetStream, tenant string, view *control.View, h budgetHorizon, now time.Time) (*budgetPace, error) {
	var meta map[string]string
	cons, err := tenantConsumer(ctx, js, tenant)
	if err != nil {
		return nil, err
	}
	if cons != nil {
		meta = cons.CachedInfo().Config.Metadata
	}
	var st tenantStatus
	return readBudgetStatus(ctx, &statusJournals{js: js, subjects: c.subjects}, tenant, meta, view, h, now, &st)
}

// tenantConsumer is one of the tenant's two consumers, the normal one
// first; nil when a worker has set up neither.
func tenantConsumer(ctx context.Context, js jetstream.JetStream, tenant string) (jetstream.Consumer, error) {
	for _, p := range control.Priorities {
		cons, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName(tenant, p))
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("consumer of %s: %w", tenant, err)
		}
		return cons, nil
	}
	return nil, nil
}

func longest(ws []limiter.Window) time.Duration {
	var d time.Duration
	for _, w := range ws {
		d = max(d, w.Length)
	}
	return d
}

// readControls reads the operators' controls (none without their bucket)
// and the budget journal's horizon (none without the journal: nothing
// counted, no override judged).
func readControls(ctx context.Context, js jetstream.JetStream, s offboard.Subjects) (*control.View, budgetHorizon, error) {
	view, err := controlView(ctx, js, s)
	if err != nil {
		return nil, budgetHorizon{}, err
	}
	horizon, err := readBudgetHorizon(ctx, js)
	if err != nil {
		horizon = budgetHorizon{}
	}
	return view, horizon, nil
}

// readCancels reads the campaigns' cancel marks; nil without the control
// bucket (which is not made here), or when it cannot be read: the ETA
// then counts every request waiting, and is no reason to fail the
// status.
func readCancels(ctx context.Context, js jetstream.JetStream) *campaign.Watcher {
	kv, err := js.KeyValue(ctx, offboard.BucketControl)
	if err != nil {
		return nil
	}
	cancels, err := campaign.ReadCancels(ctx, kv)
	if err != nil {
		return nil
	}
	return cancels
}

// controlView reads the operators' controls; none without their bucket.
func controlView(ctx context.Context, js jetstream.JetStream, s offboard.Subjects) (*control.View, error) {
	store, err := control.Open(ctx, js, s)
	if errors.Is(err, control.ErrNoBucket) {
		return &control.View{}, nil
	}
	if err != nil {
		return nil, err
	}
	return store.Load(ctx)
}
