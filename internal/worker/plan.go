package worker

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// PlanOptions tune the answers to campaign plan requests.
type PlanOptions struct {
	// PageSize is the devices asked for per inventory page (default and
	// most: mde.MaxPage).
	PageSize int
	// InlineMax is the largest CSV sent in the reply itself; a larger one
	// goes through the plans bucket (default: what fits the server's
	// maximum payload once encoded).
	InlineMax int
	// Timeout bounds one plan (default 15m); a shorter timeout in the
	// request (how long the asker waits) bounds it too.
	Timeout time.Duration
	// Heartbeat is how often a worker building a plan tells the asker it
	// still is (default 5s).
	Heartbeat time.Duration
}

// planGroup is the queue group of the plan subscriptions: one worker
// answers each request.
const planGroup = "plan"

// planner answers campaign plan requests for the worker's tenants: it
// reads the inventory under each tenant's machines quota, applies the
// tenant's protect guards and hands back the CSV. It never calls anything
// destructive.
type planner struct {
	w    *Worker
	opts PlanOptions
	nc   *nats.Conn
	log  *zap.Logger

	mu      sync.Mutex
	subs    []*nats.Subscription
	stopped bool
	running map[string]time.Time // tenant: when its plan under way began
	ctx     context.Context
	cancel  context.CancelFunc
	plans   sync.WaitGroup
	reading sync.WaitGroup // the goroutine that reads the subscriptions
}

// planBuffer is how many plan requests may wait to be read, over all
// tenants (128 KiB of channel). The reader answers each at once and plans
// it apart, but a burst comes faster than that: the connection drops what
// does not fit (a slow consumer), and, the subscription being a queue
// group's, no other replica answers it.
const planBuffer = 16384

func newPlanner(w *Worker, o PlanOptions) *planner {
	if o.PageSize <= 0 || o.PageSize > mde.MaxPage {
		o.PageSize = mde.MaxPage
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Minute
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &planner{w: w, opts: o, nc: w.opts.JS.Conn(), log: w.log.Named("plan"), ctx: ctx, cancel: cancel}
}

// start subscribes to every tenant's plan subject. The subscriptions share
// one channel and one goroutine that reads it: a subscription with a
// handler of its own costs a goroutine per tenant.
func (p *planner) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan *nats.Msg, planBuffer)
	bySubject := make(map[string]*tenantRun, len(p.w.tenants))
	for _, t := range p.w.tenants {
		subject := p.w.opts.Settings.Subjects.Plan(t.name)
		sub, err := p.nc.ChanQueueSubscribe(subject, planGroup, ch)
		if err != nil {
			t.log.Error("subscribe to plan requests: this replica answers none", zap.Error(err))
			continue
		}
		bySubject[subject] = t
		p.subs = append(p.subs, sub)
	}
	p.reading.Go(func() {
		for {
			select {
			case <-p.ctx.Done():
				return
			case m := <-ch:
				if t := bySubject[m.Subject]; t != nil {
					p.receive(t, m)
				}
			}
		}
	})
	// Once Start returns, the server knows the subscriptions.
	if err := p.nc.FlushTimeout(5 * time.Second); err != nil {
		p.log.Warn("flush the plan subscriptions", zap.Error(err))
	}
}

// stop takes no more plan requests, cancels those under way (each answers
// failed) and waits for them.
func (p *planner) stop() {
	p.mu.Lock()
	p.stopped = true
	for _, sub := range p.subs {
		_ = sub.Unsubscribe()
	}
	p.subs = nil
	p.mu.Unlock()
	p.cancel()
	p.reading.Wait()
	p.plans.Wait()
}

// receive acknowledges a plan request at once, then works on it apart from
// the connection's delivery goroutine.
func (p *planner) receive(t *tenantRun, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	if taken := queue.Reserved(p.w.opts.Settings.Subjects.Prefix, m.Reply); taken != "" {
		// Answered there, the plan would be written where only this
		// worker publishes (the quota journal, the ledger, the results)
		// or taken for a JetStream request, for whoever asked.
		t.log.Warn("plan request not answered: its reply subject is not an inbox", zap.String("under", taken))
		return
	}
	var req offboard.PlanRequest
	if err := json.Unmarshal(m.Data, &req); err != nil || req.InactiveFor <= 0 {
		p.send(t, m.Reply, planFailed(t.name, offboard.PlanCodeInvalid, "the plan request is not JSON with a positive inactiveFor"))
		return
	}
	if problem := filterValues(&req); problem != "" {
		p.send(t, m.Reply, planFailed(t.name, offboard.PlanCodeInvalid, problem))
		return
	}
	if req.Timeout < 0 {
		// The time left of the asker's deadline, spent before it sent
		// the request: nobody reads the plan. Taken for a timeout not
		// said, the plan was built under the worker's own bound until a
		// heartbeat found the asker gone, the tenant's machines quota
		// spent and its next plan refused as busy meanwhile.
		r := planFailed(t.name, offboard.PlanCodeInvalid, fmt.Sprintf("the asker's time ran out %v before it asked: no plan built", -req.Timeout))
		r.OutOfTime = true
		p.send(t, m.Reply, r)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return // no answer: the asker says no worker answered
	}
	if why := p.w.disputed(t.name); why != "" {
		// This replica's file may name the wrong tenant: its inventory
		// would list another tenant's devices.
		p.send(t, m.Reply, planFailed(t.name, offboard.PlanCodeHeld, fmt.Sprintf(
			"the replicas' tenants files disagree on tenant %s (%s): no plan, and no offboarding, until they agree", t.name, why)))
		return
	}
	// Each plan holds the tenant's filtered inventory and reads pages of up
	// to 64 MiB under the tenant's machines quota: one plan at a time per
	// tenant, and maxPlans over all of them.
	if began, ok := p.running[t.name]; ok {
		p.send(t, m.Reply, planFailed(t.name, offboard.PlanCodeBusy, fmt.Sprintf(
			"a plan of tenant %s is being built already (for %v): ask again once it is done", t.name, p.w.clock.Since(began).Round(time.Second))))
		return
	}
	if len(p.running) >= maxPlans {
		p.send(t, m.Reply, planFailed(t.name, offboard.PlanCodeBusy, fmt.Sprintf(
			"this worker is building %d plans already, its most: ask again once one is done", len(p.running))))
		return
	}
	if p.running == nil {
		p.running = map[string]time.Time{}
	}
	p.running[t.name] = p.w.clock.Now()
	p.send(t, m.Reply, p.working(t))
	timeout := p.opts.Timeout
	if req.Timeout > 0 {
		// Past it nobody reads the plan, and it would hold the tenant
		// busy and spend its machines quota all the same.
		timeout = min(timeout, req.Timeout)
	}
	p.plans.Go(func() { p.build(t, m.Reply, req, timeout) })
}

// build makes the plan and sends it to the asker, saying it is still at
// work every Heartbeat meanwhile: a worker that stops saying so is gone,
// and the asker need not wait for its --timeout. An asker gone (its inbox
// has no subscriber any more) ends the plan at the next such word.
func (p *planner) build(t *tenantRun, reply string, req offboard.PlanRequest, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	ctx, gone := context.WithCancelCause(ctx)
	defer gone(nil)
	stop := p.beat(t, reply, gone)
	var rd inventoryRead
	r := p.plan(ctx, t, req, &rd)
	stop()
	if r.State == offboard.PlanFailed && ctx.Err() != nil {
		// The read was cut short, not refused: "context canceled" would
		// send the operator to the API's permissions. A worker that
		// stopped is not out of time: in the last second of the asker's
		// --timeout, it would be told as that running out.
		r.OutOfTime = p.ctx.Err() == nil && !errors.Is(context.Cause(ctx), errAskerGone)
		switch {
		case errors.Is(context.Cause(ctx), errAskerGone):
			r.Error.Message = "the asker stopped waiting before the plan was done, and it was given up"
			t.log.Info("plan given up: the asker stopped waiting")
		case r.OutOfTime:
			r.Error.Message = fmt.Sprintf("the plan took longer than the %v it is allowed, and was given up%s", saidTime(timeout), rd.quotaNote())
		default:
			r.Error.Message = "the worker stopped before the plan was done: ask again"
		}
	}
	// Done before the answer goes: an asker who asks again at once is
	// not told a plan is under way.
	p.mu.Lock()
	delete(p.running, t.name)
	p.mu.Unlock()
	p.send(t, reply, r)
}

// saidTime is a time as a plan given up says it (the time it was
// allowed, the time it waited for the quota): to a tenth of a second from
// a second on (not 9.499686686s), to the millisecond or microsecond below
// (a short --timeout, less the answer's margin; a short wait), which a
// tenth of a second or a second would round to 0s.
func saidTime(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

// errAskerGone is the cause of a plan given up because nobody listens on
// the asker's inbox any more.
var errAskerGone = errors.New("the asker stopped waiting")

// beat says every Heartbeat that the plan is under way, until stop is
// called. Each word goes with a reply subject of the worker's own: the
// server answers it "no responders" (503) when the asker's inbox has no
// subscriber any more (interrupted, killed, or its --timeout passed),
// and gone is then called with errAskerGone. An asker that still waits
// answers nothing.
func (p *planner) beat(t *tenantRun, reply string, gone context.CancelCauseFunc) (stop func()) {
	inbox := p.nc.NewInbox()
	sub, err := p.nc.Subscribe(inbox, func(m *nats.Msg) {
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			gone(errAskerGone)
		}
	})
	if err != nil {
		t.log.Warn("subscribe to the plan's heartbeat answers: an asker gone is not noticed", zap.Error(err))
		inbox = ""
	}
	done := make(chan struct{})
	var beat sync.WaitGroup
	beat.Go(func() {
		tick := p.w.clock.NewTicker(p.opts.Heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.Chan():
				p.sendWithReply(t, reply, inbox, p.working(t))
			}
		}
	})
	return func() {
		close(done)
		beat.Wait()
		if sub != nil {
			_ = sub.Unsubscribe()
		}
	}
}

// working is the reply that says the plan is under way.
func (p *planner) working(t *tenantRun) *offboard.PlanReply {
	return &offboard.PlanReply{State: offboard.PlanWorking, Tenant: t.name, Heartbeat: p.opts.Heartbeat}
}

// maxPlans is how many plans a worker builds at once, over all tenants.
const maxPlans = 4

func (p *planner) send(t *tenantRun, subject string, r *offboard.PlanReply) {
	p.sendWithReply(t, subject, "", r)
}

// sendWithReply is send with a reply subject (none when empty).
func (p *planner) sendWithReply(t *tenantRun, subject, replyTo string, r *offboard.PlanReply) {
	data, err := json.Marshal(r)
	if err == nil {
		err = p.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: replyTo, Data: data})
	}
	if err != nil {
		t.log.Warn("answer a plan request", zap.Error(err))
	}
}

// filterValues checks the values a plan request filters on, and spells
// its healthStatus values as Defender does; it says what is wrong, ""
// when nothing is. An osPlatform value no device has (empty, or holding
// a control or formatting character, a line break pasted with it) would
// go into the inventory's filter and make the plan empty without a word.
// The inventory's filter takes a healthStatus spelled as documented, and
// refuses any other value (400): a value in another case is spelled so,
// one that is none is refused here.
func filterValues(req *offboard.PlanRequest) string {
	for _, v := range req.OS {
		if strings.TrimSpace(v) == "" || strings.ContainsFunc(v, offboard.Unseen) {
			return fmt.Sprintf("osPlatform %s is empty or holds control or formatting characters", offboard.Quote(v))
		}
	}
	health, unknown, ok := mde.HealthStatusesSpelled(req.Health)
	if !ok {
		return fmt.Sprintf("healthStatus %s is none of Defender's: want one of %s", strconv.Quote(unknown), strings.Join(mde.HealthStatuses, ", "))
	}
	req.Health = health
	return ""
}

func planFailed(tenant, code, msg string) *offboard.PlanReply {
	return &offboard.PlanReply{State: offboard.PlanFailed, Tenant: tenant, Error: offboard.Failed(code, msg)}
}

// plan reads the tenant's inventory and builds the plan; rd follows how
// far the read went.
func (p *planner) plan(ctx context.Context, t *tenantRun, req offboard.PlanRequest, rd *inventoryRead) *offboard.PlanReply {
	now := p.w.clock.Now().UTC()
	b := newPlanBuilder(t, req, now)
	pages, failed := p.readInventory(ctx, t, mde.InactiveFilter(b.reply.Cutoff, req.Health, req.OS), b, rd)
	if failed != nil {
		return failed
	}
	r := b.finish()
	r.Pages = pages
	if bw, ok := t.budget.window(); ok {
		r.Budget = &offboard.PlanLimit{Count: bw.Count, Window: bw.Length}
	}
	if normal, bulk, err := t.source.Backlog(ctx); err == nil {
		r.Backlog = int(min(normal+bulk, math.MaxInt32)) //nolint:gosec // capped just before
	}
	data, err := b.csv()
	if err != nil {
		return planFailed(t.name, offboard.PlanCodeInternal, "write the CSV: "+err.Error())
	}
	if failed := p.deliver(ctx, t, r, data); failed != nil {
		return failed
	}
	t.log.Info("plan made", zap.Int("devices", r.Count), zap.Int("pages", pages), zap.Any("left_out", r.LeftOut))
	return r
}

// inventoryRead is how far a plan's read of the inventory went, and how
// long it waited for the tenant's machines quota: a plan given up for
// time says so (quotaNote).
type inventoryRead struct {
	pages, devices int
	quotaWait      time.Duration // waiting for a page's place in the quota, in all
	waitingQuota   bool          // the read ended while it waited for one
}

// quotaNote says, after "given up", that the plan waited for the
// tenant's machines quota, which the requests' device reads and lookups
// share: when it ended during that wait, or waited a second or more in
// all; and how much of the inventory it read. Empty when it did not wait.
func (rd *inventoryRead) quotaNote() string {
	read := counted(rd.pages, "inventory page") + " read, " + counted(rd.devices, "device")
	switch {
	case rd.waitingQuota:
		return fmt.Sprintf(" while waiting for the tenant's machines quota, which the requests' device reads share (%v of waiting in all; %s)",
			saidTime(rd.quotaWait), read)
	case rd.quotaWait >= time.Second:
		return fmt.Sprintf(" (%v of it waiting for the tenant's machines quota, which the requests' device reads share; %s)",
			saidTime(rd.quotaWait), read)
	}
	return ""
}

// timedAcquire is the caller's own wait for an inventory page's place in
// the tenant's machines quota, timed in rd.
func (p *planner) timedAcquire(t *tenantRun, rd *inventoryRead) func(context.Context) (*limiter.Permit, error) {
	return func(ctx context.Context) (*limiter.Permit, error) {
		began := p.w.clock.Now()
		permit, err := p.w.caller.acquire(ctx, t, mde.APIMachines, false)
		rd.quotaWait += p.w.clock.Since(began)
		rd.waitingQuota = err != nil
		return permit, err
	}
}

// readInventory reads the inventory pages matching filter, each under the
// tenant's machines quota, and gives every device to b, after the time
// the API answered its page (b.answeredAt). It returns the pages read, or
// a failed reply; rd follows the read.
//
// The inventory changes while it is read: a device seen again leaves the
// filtered list, and those after it move up, so that a page asked from
// the count read so far would begin past devices never read. Each page
// after the first is asked from a little before that count, and must hold
// a device read already (the list's order kept, nothing between was
// missed); one that holds none is asked again from further back.
func (p *planner) readInventory(ctx context.Context, t *tenantRun, filter string, b *planBuilder, rd *inventoryRead) (int, *offboard.PlanReply) {
	j := &job{t: t, log: t.log.Named("plan")}
	acquire := p.timedAcquire(t, rd)
	top := p.opts.PageSize
	read := map[string]bool{} // every device given to add, whatever the filters
	next := 0                 // where the last page read ended
	back := 0                 // how far before next the next page is asked
	for page := 0; ; page++ {
		skip := max(next-back, 0)
		v, res, err := p.w.caller.call(ctx, j, callSpec{api: mde.APIMachines, acquire: acquire, do: func(ctx context.Context) *mde.Verdict {
			return t.Client.ListMachines(ctx, filter, top, skip)
		}}, nil)
		switch {
		case err != nil:
			return page, planFailed(t.name, offboard.PlanCodeInventory, "read the inventory: "+err.Error())
		case res != nil:
			return page, planFailed(t.name, offboard.PlanCodeInventory, "read the inventory: "+res.Error.Message)
		case v.Class != mde.Success:
			return page, planFailed(t.name, offboard.PlanCodeInventory, "read the inventory: "+v.Error())
		}
		machines, more, err := mde.ParseMachineList(v.Body)
		if err != nil {
			return page, planFailed(t.name, offboard.PlanCodeInventory, "read the inventory: "+err.Error())
		}
		known := 0
		for _, m := range machines {
			if read[strings.ToLower(m.ID)] {
				known++
			}
		}
		if skip > 0 && known == 0 {
			// More devices left the list before this page than it was
			// asked back for: some may lie between it and those read.
			// Asked again from further back, it is read then.
			back = min(2*back, next)
			continue
		}
		b.answeredAt(v.ServerTime)
		for _, m := range machines {
			read[strings.ToLower(m.ID)] = true
			b.add(m)
		}
		next = skip + len(machines)
		back = max(len(machines)/100, 1)
		rd.pages, rd.devices = page+1, len(read)
		// A page shorter than asked ends the inventory, unless the API
		// says more follow (@odata.nextLink): its pages are then shorter
		// than $top, and the next one starts after the devices read.
		switch {
		case more && len(machines) == 0:
			return page, planFailed(t.name, offboard.PlanCodeInventory, "read the inventory: the API answered a page with no device and more to follow (@odata.nextLink)")
		case !more && len(machines) < top:
			return page + 1, nil
		}
	}
}

// deliver puts the CSV in the reply, or in the plans bucket when large,
// or when the reply with it would not fit a message (the counts by
// device group can be large too). A reply that does not fit even without
// the CSV fails the plan: dropped, it left the asker waiting for its
// timeout.
func (p *planner) deliver(ctx context.Context, t *tenantRun, r *offboard.PlanReply, data []byte) *offboard.PlanReply {
	r.Size = len(data)
	inline := p.opts.InlineMax
	if inline <= 0 {
		// Base64 makes 4 bytes of 3; the rest of the reply is most often small.
		inline = int(p.nc.MaxPayload())*3/4 - 64<<10
	}
	if len(data) <= inline {
		r.CSV = data
		if p.fits(r) {
			return nil
		}
		r.CSV = nil
	}
	if !p.fits(r) {
		return planFailed(t.name, offboard.PlanCodeInternal, fmt.Sprintf(
			"the plan's summary (%d device groups, %d platforms, %d health states) is larger than a NATS message carries (%d bytes): narrow it with --os or --health",
			len(r.ByGroup), len(r.ByOS), len(r.ByHealth), p.nc.MaxPayload()))
	}
	store, err := p.w.opts.JS.ObjectStore(ctx, offboard.BucketPlans)
	if err != nil {
		return planFailed(t.name, offboard.PlanCodeInternal, fmt.Sprintf("bucket %s: %v", offboard.BucketPlans, err))
	}
	name := fmt.Sprintf("%s/%s-%s.csv", t.name, r.AsOf.Format("20060102T150405Z"), nuid.Next())
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "campaign plan of tenant " + t.name}, bytes.NewReader(data)); err != nil {
		return planFailed(t.name, offboard.PlanCodeInternal, fmt.Sprintf("store the plan in %s: %v", offboard.BucketPlans, err))
	}
	r.Object = name
	return nil
}

// fits says whether the reply fits a message of the server's, with room
// for the name of the object that may carry its CSV.
func (p *planner) fits(r *offboard.PlanReply) bool {
	data, err := json.Marshal(r)
	return err == nil && int64(len(data)) <= p.nc.MaxPayload()-1<<10
}

// planRow is one device of a plan.
type planRow struct {
	m    mde.Machine
	last time.Time
}

// planBuilder keeps the devices that pass the filters and no protect
// guard, and counts them.
type planBuilder struct {
	t      *tenantRun
	req    offboard.PlanRequest
	now    time.Time
	reply  *offboard.PlanReply
	seen   map[string]bool
	rows   []planRow
	guards func(mde.Machine) string
}

func newPlanBuilder(t *tenantRun, req offboard.PlanRequest, now time.Time) *planBuilder {
	// The protect rules only: the plan's own inactiveFor is the choice made.
	g := t.Config.Guards
	g.RequireInactiveFor = nil
	return &planBuilder{
		t: t, req: req, now: now, seen: map[string]bool{},
		reply: &offboard.PlanReply{
			State: offboard.PlanDone, Tenant: t.name, AsOf: now, Cutoff: now.Add(-req.InactiveFor),
			ByOS: offboard.Counts{}, ByHealth: offboard.Counts{}, ByGroup: offboard.Counts{}, LeftOut: offboard.Counts{},
			Limits: planLimits(t),
		},
		guards: func(m mde.Machine) string {
			rule, _ := refusal(&g, m.ID, &m, now)
			return rule
		},
	}
}

func planLimits(t *tenantRun) []offboard.PlanLimit {
	var out []offboard.PlanLimit
	for _, w := range t.Config.Resolved.Windows[mde.APIOffboard] {
		out = append(out, offboard.PlanLimit{Count: w.Count, Window: w.Length})
	}
	return out
}

// answeredAt takes the API's clock when it answered a page (its Date;
// zero: not said): the cutoff is now less the plan's inactiveFor by the
// earlier of this host's clock and the API's, as requireInactiveFor's
// (guardNow). lastSeen is the API's time: a host clock that runs days
// ahead (its time synchronisation failed, and a NATS server on the same
// host as far ahead) would list a device seen an hour ago as unseen for
// days. The filter sent to the API used the host's cutoff, which is then
// later: the devices it let through past the cutoff are left out (add).
// A Date is in whole seconds: the API's clock said up to a second more,
// which is taken, or a plan of exactly the age of a device seen a moment
// before the plan would leave it out.
func (b *planBuilder) answeredAt(served time.Time) {
	if served.IsZero() {
		return
	}
	if cutoff := served.Add(time.Second - b.req.InactiveFor); cutoff.Before(b.reply.Cutoff) {
		b.reply.Cutoff = cutoff
	}
}

// add takes one device of the inventory: whatever the API's filter let
// through, only the devices that match the request count.
func (b *planBuilder) add(m mde.Machine) {
	id := strings.ToLower(m.ID)
	if !offboard.ValidMachineID(id) || b.seen[id] {
		return // a page boundary moved under a changing inventory
	}
	last, ok := m.LastSeenTime()
	if !ok || last.Before(mde.EarliestSighting) || !last.Before(b.reply.Cutoff) || !oneOf(m.HealthStatus, b.req.Health) || !oneOf(m.OSPlatform, b.req.OS) {
		return
	}
	b.seen[id] = true
	if rule := b.guards(m); rule != "" {
		b.reply.LeftOut[rule]++
		return
	}
	m.ID = id
	b.rows = append(b.rows, planRow{m: m, last: last})
	b.reply.ByOS[m.OSPlatform]++
	b.reply.ByHealth[m.HealthStatus]++
	b.reply.ByGroup[m.RbacGroupName]++
}

// oneOf reports whether v is one of want (any case); no want: any v.
func oneOf(v string, want []string) bool {
	return len(want) == 0 || slices.ContainsFunc(want, func(w string) bool { return strings.EqualFold(v, w) })
}

// finish sorts the rows, oldest lastSeen first, and completes the counts.
func (b *planBuilder) finish() *offboard.PlanReply {
	slices.SortFunc(b.rows, func(x, y planRow) int {
		if c := x.last.Compare(y.last); c != 0 {
			return c
		}
		return strings.Compare(x.m.ID, y.m.ID)
	})
	r := b.reply
	r.Count = len(b.rows)
	if r.Count > 0 {
		r.Oldest = b.rows[0].last.Format(time.RFC3339)
		r.Newest = b.rows[r.Count-1].last.Format(time.RFC3339)
	}
	return r
}

// csv writes the rows as the contract's CSV.
func (b *planBuilder) csv() ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(offboard.PlanHeader)
	for _, row := range b.rows {
		m := row.m
		_ = w.Write([]string{m.ID, campaign.NotFormula(m.ComputerDNSName), row.last.Format(time.RFC3339Nano), campaign.NotFormula(m.OSPlatform),
			campaign.NotFormula(m.HealthStatus), campaign.NotFormula(m.RbacGroupName), campaign.NotFormula(strings.Join(m.MachineTags, ";"))})
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// counted is n things, "1 device", "2 devices".
func counted(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
