package offboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BucketPlans is the object store bucket that carries a campaign plan's
// CSV when it is too large for the reply.
const BucketPlans = "MDE_OFFBOARD_PLANS"

// PlanHeader is the header row of a plan's CSV.
var PlanHeader = []string{"machineId", "computerDnsName", "lastSeen", "osPlatform", "healthStatus", "rbacGroupName", "machineTags"}

// PlanRequest asks a worker for the tenant's devices that Defender has not
// seen for InactiveFor, on Subjects.Plan(tenant).
type PlanRequest struct {
	InactiveFor time.Duration `json:"inactiveFor"` // nanoseconds, > 0
	Health      []string      `json:"healthStatus,omitempty"`
	OS          []string      `json:"osPlatform,omitempty"`
	// Timeout is how long the asker waits for the plan (nanoseconds; 0:
	// not said; below 0: its time ran out before it asked, and no plan is
	// built): the worker gives the plan up then, as nobody would read
	// it. RequestPlan sets it from its context's deadline.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Plan states, in the order a worker sends them on the reply subject.
const (
	PlanWorking = "working" // the worker took the request; more follows
	PlanDone    = "done"
	PlanFailed  = "failed"
)

// Plan failure codes.
const (
	PlanCodeInvalid   = "invalid_request"      // the plan request itself is wrong
	PlanCodeInventory = "inventory_unreadable" // the API did not give the inventory
	PlanCodeBusy      = "busy"                 // a plan of the tenant, or the worker's most, under way already
	PlanCodeHeld      = "held"                 // the replicas' tenants files disagree on the tenant
	PlanCodeInternal  = CodeInternal
)

// PlanReply is a worker's answer to a PlanRequest. The worker first sends
// one with State PlanWorking as soon as it takes the request, then one
// with PlanDone or PlanFailed.
type PlanReply struct {
	State    string       `json:"state"`
	Tenant   string       `json:"tenant"`
	Error    *ResultError `json:"error,omitempty"` // PlanFailed: code and message
	AsOf     time.Time    `json:"asOf,omitzero"`   // the worker's clock when it read the inventory
	Cutoff   time.Time    `json:"cutoff,omitzero"` // devices last seen strictly before this are in the plan
	Count    int          `json:"count"`
	Oldest   string       `json:"oldest,omitempty"` // lastSeen of the first row, RFC 3339
	Newest   string       `json:"newest,omitempty"`
	ByOS     Counts       `json:"byOsPlatform,omitempty"`
	ByHealth Counts       `json:"byHealthStatus,omitempty"`
	ByGroup  Counts       `json:"byRbacGroup,omitempty"`
	// LeftOut counts the devices that passed the filters but a guard
	// protects, by rule (the first matching rule in the rule table's order).
	LeftOut Counts `json:"leftOut,omitempty"`
	// Pages is how many machines API calls the inventory took.
	Pages int `json:"pages"`
	// Limits are the tenant's offboard windows; Backlog the requests of the
	// tenant waiting now, both priorities: a campaign's requests go after
	// them.
	Limits  []PlanLimit `json:"offboardLimits,omitempty"`
	Backlog int         `json:"backlog"`
	// Budget is the tenant's budget in force, if any: at most so many
	// actions created in any window, which holds a campaign to its pace
	// where it is slower than the quota.
	Budget *PlanLimit `json:"budget,omitempty"`
	// Heartbeat, in a PlanWorking reply, is how often the worker says
	// again that it is at work (nanoseconds; 0: not said). A silence of
	// several heartbeats means the worker is gone (ErrPlannerGone).
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
	// OutOfTime, in a PlanFailed reply, says the plan took longer than it
	// was allowed (PlanRequest.Timeout, or the worker's own bound), and
	// failed for that, not for what the API answered.
	OutOfTime bool `json:"outOfTime,omitempty"`
	// The CSV: in CSV when small, else in the object Object of bucket
	// BucketPlans (Size bytes).
	CSV    []byte `json:"csv,omitempty"`
	Object string `json:"object,omitempty"`
	Size   int    `json:"size"`
}

// Counts are counts by a name.
type Counts map[string]int

// PlanLimit is one quota window: Count calls in any Window.
type PlanLimit struct {
	Count  int           `json:"count"`
	Window time.Duration `json:"window"` // nanoseconds
}

// ErrNoPlanner is returned when no worker serving the tenant took a plan
// request in time.
var ErrNoPlanner = errors.New("no worker serving the tenant answered")

// ErrPlannerGone is returned when the worker that took a plan request
// stopped saying it was at work (it was stopped or lost its connection).
var ErrPlannerGone = errors.New("the worker building the plan stopped answering")

// heartbeatsMissed is how many of a worker's heartbeats may go missing
// before it is taken for gone.
const heartbeatsMissed = 4

// RequestPlan asks a worker serving tenant for a plan and returns its
// answer and the CSV. accept bounds how long a worker may take to answer
// at all (ErrNoPlanner); ctx bounds the whole plan. A worker's refusal is
// returned as the reply, with State PlanFailed, and no CSV.
func RequestPlan(ctx context.Context, js jetstream.JetStream, s Subjects, tenant string, req PlanRequest, accept time.Duration) (*PlanReply, []byte, error) {
	if deadline, ok := ctx.Deadline(); ok && req.Timeout <= 0 {
		req.Timeout = time.Until(deadline)
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	nc := js.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to the reply subject: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	m := nats.NewMsg(s.Plan(tenant))
	m.Reply = inbox
	m.Data = data
	if err := nc.PublishMsg(m); err != nil {
		return nil, nil, fmt.Errorf("send plan request: %w", err)
	}
	reply, err := nextReply(ctx, sub, tenant, accept)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// Told at once by the server: no wait of accept to name.
		return nil, nil, fmt.Errorf("tenant %s: %w: nothing listens on %s", tenant, ErrNoPlanner, m.Subject)
	case errors.Is(err, nats.ErrTimeout):
		return nil, nil, fmt.Errorf("tenant %s: %w within %v", tenant, ErrNoPlanner, accept)
	}
	var silence time.Duration // after it, the worker is gone; 0: wait for ctx
	for err == nil && reply.State == PlanWorking {
		if reply.Heartbeat > 0 {
			silence = max(heartbeatsMissed*reply.Heartbeat, time.Second)
		}
		reply, err = nextReply(ctx, sub, tenant, silence)
	}
	if errors.Is(err, nats.ErrTimeout) {
		return nil, nil, fmt.Errorf("tenant %s: %w (no word for %v)", tenant, ErrPlannerGone, silence)
	}
	if err != nil {
		return nil, nil, err
	}
	if reply.State != PlanDone {
		return reply, nil, nil
	}
	csv, err := planCSV(ctx, js, reply)
	return reply, csv, err
}

// nextReply waits for the next plan reply of tenant on the reply subject,
// at most wait when it is set. Whatever else answers the request (a
// stream that captures the plan subjects answers with its publish
// acknowledgement, a tool listening on them may answer anything) is no
// worker's reply: it is passed over, and the worker's is waited for.
func nextReply(ctx context.Context, sub *nats.Subscription, tenant string, wait time.Duration) (*PlanReply, error) {
	wctx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	for {
		msg, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				return nil, nats.ErrTimeout
			}
			return nil, fmt.Errorf("wait for the plan: %w", err)
		}
		if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		var r PlanReply
		if json.Unmarshal(msg.Data, &r) != nil || r.Tenant != tenant {
			continue
		}
		switch r.State {
		case PlanWorking, PlanDone, PlanFailed:
			return &r, nil
		}
	}
}

// planCSV is the plan's CSV, from the reply or the object store. The
// object is removed once read: it holds device names.
func planCSV(ctx context.Context, js jetstream.JetStream, r *PlanReply) ([]byte, error) {
	if r.Object == "" {
		return r.CSV, nil
	}
	store, err := js.ObjectStore(ctx, BucketPlans)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", BucketPlans, err)
	}
	obj, err := store.Get(ctx, r.Object)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", r.Object, err)
	}
	defer func() { _ = obj.Close() }()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, obj); err != nil {
		return nil, fmt.Errorf("read plan %s: %w", r.Object, err)
	}
	if buf.Len() != r.Size {
		return nil, fmt.Errorf("plan %s: %d bytes, the worker wrote %d", r.Object, buf.Len(), r.Size)
	}
	_ = store.Delete(ctx, r.Object)
	return buf.Bytes(), nil
}

// DrainTime is how long n offboard calls take at best under the limits,
// with no other call in the windows: the start of the last call in the
// earliest schedule the windows allow. The k-th call (0-based) starts no
// earlier than Window after the (k-Count)-th, in every limit: 3000 calls
// under 100/1m and 1500/1h end at 1h14m (the hour window lets the
// 1501st call go at 1h, and the minute window then paces the rest).
// It counts call by call, keeping only the last Count starts; more than
// MaxDrainCalls calls, or a time past what a Duration holds, is the
// longest Duration.
func DrainTime(limits []PlanLimit, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	if n > MaxDrainCalls {
		return math.MaxInt64
	}
	size := 1
	for _, l := range limits {
		if l.Count > 0 {
			size = max(size, l.Count+1)
		}
	}
	starts := make([]time.Duration, min(size, n)) // starts[k % len]
	var last time.Duration
	for k := range n {
		last = 0
		for _, l := range limits {
			if l.Count <= 0 || k < l.Count {
				continue
			}
			prev := starts[(k-l.Count)%len(starts)]
			if l.Window > math.MaxInt64-prev {
				return math.MaxInt64
			}
			last = max(last, prev+l.Window)
		}
		starts[k%len(starts)] = last
	}
	return last
}

// MaxDrainCalls bounds the calls DrainTime counts one by one: at 1500
// calls an hour, more than 760 years of them.
const MaxDrainCalls = 10_000_000

// WriteSummary writes a plan's summary for people: count, oldest and
// newest lastSeen, counts by platform, health and device group, the
// devices left out by each guard rule, and how long running it as a
// campaign would take at the tenant's quota.
func (r *PlanReply) WriteSummary(w io.Writer, file string) {
	fmt.Fprintf(w, "plan for tenant %s: %d devices not seen since %s", r.Tenant, r.Count, r.Cutoff.UTC().Format(time.RFC3339))
	if file != "" {
		fmt.Fprintf(w, ", written to %s", file)
	}
	fmt.Fprintln(w)
	if r.Count > 0 {
		fmt.Fprintf(w, "  lastSeen         oldest %s, newest %s\n", r.Oldest, r.Newest)
	}
	writeCounts(w, "osPlatform", r.ByOS)
	writeCounts(w, "healthStatus", r.ByHealth)
	writeCounts(w, "device group", r.ByGroup)
	left := 0
	for _, n := range r.LeftOut {
		left += n
	}
	fmt.Fprintf(w, "  left out         %d protected by the tenant's guards", left)
	for _, rule := range Rules {
		if n := r.LeftOut[rule]; n > 0 {
			fmt.Fprintf(w, "; %s: %d", rule, n)
		}
	}
	fmt.Fprintln(w)
	limits := make([]string, len(r.Limits))
	for i, l := range r.Limits {
		limits[i] = fmt.Sprintf("%d/%s", l.Count, ShortDuration(l.Window))
	}
	pace, windows := strings.Join(limits, " and "), r.Limits
	if b := r.Budget; b != nil {
		// Each request creates an action at most: the budget paces them too.
		pace += fmt.Sprintf(", budget %d/%s", b.Count, ShortDuration(b.Window))
		windows = append(slices.Clip(windows), *b)
	}
	eta := DrainTime(windows, r.Backlog+r.Count)
	fmt.Fprintf(w, "  campaign run     about %s at %s (%d requests of the tenant waiting ahead of it); inventory pages read: %d\n",
		ShortDuration(eta.Round(time.Second)), pace, r.Backlog, r.Pages)
}

func writeCounts(w io.Writer, what string, c Counts) {
	if len(c) == 0 {
		return
	}
	names := slices.Sorted(maps.Keys(c))
	// Largest first, then by name.
	slices.SortStableFunc(names, func(a, b string) int { return c[b] - c[a] })
	parts := make([]string, len(names))
	for i, n := range names {
		// The API's words: a terminal escape or a line break in a
		// device group's name is shown escaped, not acted on.
		label := Printable(n)
		if label == "" {
			label = "(none)"
		}
		parts[i] = fmt.Sprintf("%s %d", label, c[n])
	}
	fmt.Fprintf(w, "  %-16s %s\n", what, strings.Join(parts, ", "))
}

// Printable is s with its characters that are not printable (control
// characters, terminal escapes, line breaks) written as Go escapes: text
// of the API's or a publisher's, shown on a terminal.
func Printable(s string) string {
	if !strings.ContainsFunc(s, notPrintable) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if notPrintable(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// ShortDuration writes a duration without Go's zero minutes and
// seconds: 1h0m0s as 1h, 1m0s as 1m, 90m as 1h30m.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
