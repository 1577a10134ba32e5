package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func newCampaignCancelCmd(c *cli) *cobra.Command {
	var (
		tenant, name, by string
		w                who
	)
	cmd := &cobra.Command{
		Use:   "cancel --tenant T --name NAME",
		Short: "Withdraw a campaign's waiting requests: each is answered failed with code cancelled",
		Long: `Marks the campaign cancelled in the control bucket. Every worker replica
answers each of its requests that it takes from then on, and that no call
was made for, failed with code cancelled (and a dead letter), without an
API call; a request already under way finishes. Its requests are those
with source campaign:<NAME>, and those with its request ids
(<NAME>-<6 digits>) stored before the cancel. A campaign run still
publishing stops. Nothing is dropped unanswered. A name none of the
tenant's requests carries, and no campaign run recorded, is refused
(exit 1) and nothing is marked.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTenant(tenant); err != nil {
				return err
			}
			if err := checkName(name); err != nil {
				return err
			}
			if cmd.Flags().Changed("by") {
				if cmd.Flags().Changed("as") && by != w.as {
					return usagef("--as given twice, with two values (once as --by): give it once")
				}
				w.as, w.asFlag = by, "--by"
			}
			if err := w.check(); err != nil {
				return err
			}
			if cmd.Flags().Changed("by") {
				// On standard error, once the usage is right: standard
				// output is the command's answer.
				fmt.Fprintln(c.stderr, "offboardctl: --by is deprecated: use --as, as the other control commands do")
			}
			return c.cancelCampaign(cmd.Context(), tenant, name, campaign.Mark{Cancelled: true, By: w.as, Reason: w.reason, At: time.Now().UTC()})
		},
	}
	onceFlag(cmd.Flags(), &tenant, "tenant", "", "tenant (required)")
	onceFlag(cmd.Flags(), &name, "name", "", "campaign name (required)")
	w.flags(cmd)
	// --by was this command's name for --as; kept so scripts go on working.
	cmd.Flags().StringVar(&by, "by", defaultUser(), "same as --as")
	once(cmd.Flags(), "by")
	_ = cmd.Flags().MarkHidden("by")
	return cmd
}

// controlEvent is published on the tenant's control subject for the audit
// trail.
type controlEvent struct {
	Action   string    `json:"action"`
	Tenant   string    `json:"tenant"`
	Campaign string    `json:"campaign,omitempty"`
	By       string    `json:"by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

func (c *cli) cancelCampaign(ctx context.Context, tenant, name string, m campaign.Mark) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	kv, err := campaign.ControlBucket(ctx, js)
	if err != nil {
		return err
	}
	// A campaign cancelled already keeps its first mark: its time tells
	// the campaign's requests from later ones with the form of its ids.
	// Read first: its results may have aged out of their stream.
	was, err := campaign.GetMark(ctx, kv, tenant, name)
	if err != nil {
		return err
	}
	if was != nil && was.Cancelled {
		c.storeMissedEvent(ctx, js, kv, tenant, name, was)
		return c.cancelledAlready(tenant, name, was)
	}
	// A name no request carries, and no run recorded, is a mistake (the
	// CSV's file name for the campaign's, a typo): its mark would cancel
	// nothing now, and a later campaign of that name at once. Requests and
	// results that cannot be read cannot tell: nothing is marked blindly.
	// A run records its campaign before it publishes (it reads the
	// tenant's backlog first): its campaign is cancelled at once.
	if was == nil || was.Started.IsZero() {
		if err := c.campaignExists(ctx, js, tenant, name); err != nil {
			return err
		}
	}
	switch err := campaign.SetMark(ctx, kv, tenant, name, m); {
	case errors.Is(err, campaign.ErrCancelledAlready):
		// Another operator's cancel came first.
		was, gerr := campaign.GetMark(ctx, kv, tenant, name)
		if gerr != nil || was == nil {
			was = &campaign.Mark{Cancelled: true}
		}
		return c.cancelledAlready(tenant, name, was)
	case err != nil && control.Unanswered(err) && !control.WriteRefused(js.Conn(), campaign.Key(tenant, name)):
		// The mark may have been stored, its answer lost (the bucket's
		// leader lost between the write and the reply): the cancel may
		// be in force, and the worker acting on it.
		return fmt.Errorf("campaign %s of tenant %s not known to be cancelled: its mark got no answer, and may have been stored (%w); "+
			"offboardctl campaign status --tenant %s --name %s shows whether it is, and the same campaign cancel again finishes it", name, tenant, err, tenant, name)
	case err != nil && control.Unanswered(err):
		return fmt.Errorf("campaign %s of tenant %s not cancelled: its mark was refused (%w)", name, tenant, err)
	case err != nil:
		return err
	}
	if _, err := c.publishCancelEvent(ctx, js, tenant, name, &m); err != nil {
		return fmt.Errorf("campaign %s is cancelled, but its control event was not stored (offboardctl campaign cancel again stores it): %w", name, err)
	}
	st, err := c.campaignStatus(ctx, js, tenant, name)
	if err != nil {
		fmt.Fprintf(c.stdout, "campaign %s of tenant %s cancelled; its waiting requests will be answered cancelled\n", name, tenant)
		return nil //nolint:nilerr // the cancel stands; the count is only information
	}
	note := ""
	if _, none := workersOf(readAnnounced(ctx, js), tenant, time.Now()); none {
		// Only a worker answers them, as status says of the backlog.
		note += "; no worker has announced the tenant: none is answered before one runs"
	}
	fmt.Fprintf(c.stdout, "campaign %s of tenant %s cancelled: %s\n", name, tenant, cancelCounts(st, note))
	return nil
}

// cancelCounts says what a cancel leaves: the requests waiting, which
// will be answered cancelled, and those answered. The count follows the
// mark, which a worker may read first: requests it answered cancelled
// meanwhile are among those answered.
func cancelCounts(st *campaignState, note string) string {
	cancelled := ""
	if n := st.FailedByCode[offboard.CodeCancelled]; n > 0 {
		cancelled = fmt.Sprintf(", %d of them cancelled", n)
	}
	waiting := "none of its requests waits now"
	switch {
	case st.Waiting == 1:
		waiting = "1 request waiting will be answered cancelled" + note
	case st.Waiting > 1:
		waiting = fmt.Sprintf("%d requests waiting will be answered cancelled%s", st.Waiting, note)
	}
	return fmt.Sprintf("%s; %d answered so far%s", waiting, st.Answered, cancelled)
}

// campaignExists refuses a campaign name none of the tenant's requests
// carries, waiting or answered.
func (c *cli) campaignExists(ctx context.Context, js jetstream.JetStream, tenant, name string) error {
	st, err := c.campaignStatus(ctx, js, tenant, name)
	if err != nil {
		return fmt.Errorf("campaign %s of tenant %s: cannot tell whether any request carries it: %w; nothing cancelled", name, tenant, err)
	}
	if st.Answered == 0 && st.Waiting == 0 {
		return fmt.Errorf("tenant %s has no campaign %s: none of its requests waits or was answered, and no campaign run of it started; "+
			"nothing cancelled (see campaign status --name)", tenant, name)
	}
	return nil
}

// publishCancelEvent publishes the control event of a cancel, under a
// message id made of its mark's time: published again, the stream drops
// the repeat (stored reports false).
func (c *cli) publishCancelEvent(ctx context.Context, js jetstream.JetStream, tenant, name string, m *campaign.Mark) (stored bool, err error) {
	ev, err := json.Marshal(controlEvent{Action: "campaign.cancel", Tenant: tenant, Campaign: name, By: m.By, Reason: m.Reason, At: m.At})
	if err != nil {
		return false, err
	}
	// Waited for as long as the command's JetStream requests are
	// (--connect-timeout), not queue.PublishJSON's step: the ack says
	// whether the stream dropped a repeat. Another operator's cancel,
	// which found the mark set, may be storing the same event (on a
	// cluster, "in process"): published again once it is, within that
	// time, the event is dropped as its repeat.
	msg := queue.JSONMsg(c.subjects.Control(tenant), fmt.Sprintf("control:%s:campaign.cancel:%s:%d", tenant, name, m.At.UnixNano()), ev)
	cancelEventPublishing(js, msg)
	ack, err := publishPastInProcess(ctx, js, msg, c.timeout)
	if err != nil {
		return false, fmt.Errorf("publish to %s: %w", msg.Subject, err)
	}
	return !ack.Duplicate, nil
}

// cancelEventPublishing is called with a cancel's control event as it is
// about to be published: a test publishes there.
var cancelEventPublishing = func(jetstream.JetStream, *nats.Msg) {}

// storeMissedEvent publishes again the control event of a cancel found
// in force, which its own command may have failed to store (the
// connection lost after the mark, no leave to publish): the audit trail
// then never had it. The stream drops the repeat of one stored within
// its duplicate window; past the window, the event is not published, as
// it could be stored twice. Best effort: the cancel stands either way.
//
// The window is measured by the server's clock, from when it stored the
// mark (before the event) to its time now: the mark's own time is the
// cancelling machine's, and a clock there ahead of this one's kept a
// stored event inside the window for as long, stored again by every
// cancel.
func (c *cli) storeMissedEvent(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, tenant, name string, was *campaign.Mark) {
	if was.At.IsZero() {
		return
	}
	e, err := kv.Get(ctx, campaign.Key(tenant, name))
	if err != nil {
		return
	}
	s, err := js.Stream(ctx, offboard.StreamResults)
	if err != nil {
		return
	}
	info := s.CachedInfo()
	if info.TimeStamp.IsZero() || e.Created().IsZero() || info.TimeStamp.Sub(e.Created()) >= info.Config.Duplicates {
		return
	}
	if stored, err := c.publishCancelEvent(ctx, js, tenant, name, was); err == nil && stored {
		fmt.Fprintf(c.stdout, "the control event of the cancel of campaign %s of tenant %s, not stored then, is stored now\n", name, tenant)
	}
}

// cancelledAlready says that the campaign was cancelled before, by whom,
// when and why: nothing changed, and that is no failure.
func (c *cli) cancelledAlready(tenant, name string, was *campaign.Mark) error {
	if was.At.IsZero() {
		fmt.Fprintf(c.stdout, "campaign %s of tenant %s was cancelled already; nothing changed\n", name, tenant)
		return nil
	}
	fmt.Fprintf(c.stdout, "campaign %s of tenant %s was cancelled already, %s by %s: %s; nothing changed\n",
		name, tenant, was.At.Format("2006-01-02 15:04:05Z07:00"), orNone(printable(was.By)), orNone(printable(was.Reason)))
	return nil
}

// campaignState is what campaign status shows.
type campaignState struct {
	Tenant         string         `json:"tenant"`
	Name           string         `json:"name"`
	Cancelled      *campaign.Mark `json:"cancelled,omitempty"`
	Answered       int            `json:"answered"`
	Created        int            `json:"created"`
	AlreadyPending int            `json:"already_pending"`
	DryRun         int            `json:"dry_run"`
	Failed         int            `json:"failed"`
	FailedByCode   map[string]int `json:"failedByCode,omitempty"`
	Waiting        int            `json:"waiting"`
	Backlog        int            `json:"tenantBacklog"`
	// ETASeconds is nil while a pause holds every request waiting, as in
	// offboardctl status --json: 0 would read as nothing left to do.
	ETASeconds *float64 `json:"etaSeconds"`
	ETA        string   `json:"eta"` // "paused" while a pause holds every request waiting
	Paused     bool     `json:"paused,omitempty"`
	// LastAnnounced and NoWorker are status's, told while requests of
	// the campaign wait: with no worker, the ETA is what they take once
	// one runs.
	LastAnnounced *time.Time `json:"lastAnnounced,omitempty"`
	NoWorker      bool       `json:"noWorker,omitempty"`

	waitingBy map[offboard.Priority]int
	ahead     int // the tenant's backlog served before the campaign's last request
}

// tally keeps the latest outcome of each row seen: one byte per row.
type tally struct {
	outcome []string // by row; "" none
	attempt []int
	code    []string
}

// add records a result of row n.
func (t *tally) add(n int, r resultView) {
	for len(t.outcome) <= n {
		t.outcome, t.attempt, t.code = append(t.outcome, ""), append(t.attempt, 0), append(t.code, "")
	}
	if t.outcome[n] != "" && r.Attempt <= t.attempt[n] {
		return
	}
	t.outcome[n], t.attempt[n], t.code[n] = r.Outcome, r.Attempt, r.Code
}

type resultView struct {
	RequestID, Outcome, Code string
	Attempt                  int
}

// campaignStatus counts the campaign's rows answered and its requests
// waiting. The requests are read before the results: a request leaves
// the stream only once its result is stored, so each is seen in one read
// or the other, and one seen in both counts answered. Read the other way
// round, a request answered between the reads was in neither.
func (c *cli) campaignStatus(ctx context.Context, js jetstream.JetStream, tenant, name string) (*campaignState, error) {
	var waiting []waitingRequest
	err := campaignRequests(ctx, js, c.subjects, tenant, name, func(p offboard.Priority, row, attempt int, _ jetstream.Msg) {
		waiting = append(waiting, waitingRequest{p: p, row: row, attempt: attempt})
	})
	if err != nil {
		return nil, err
	}
	t, err := c.campaignResults(ctx, js, tenant, name)
	if err != nil {
		return nil, err
	}
	st := &campaignState{Tenant: tenant, Name: name, FailedByCode: map[string]int{}, waitingBy: map[offboard.Priority]int{}}
	for i, o := range t.outcome {
		st.count(o, t.code[i])
	}
	for _, w := range waiting {
		// A retry (attempt 2 or more) of a row whose result answers an
		// earlier attempt is waiting again.
		if !t.answered(w.row, w.attempt) {
			st.waitingBy[w.p]++
			st.Waiting++
		}
	}
	return st, nil
}

// waitingRequest is a request of a campaign read in the request stream.
type waitingRequest struct {
	p            offboard.Priority
	row, attempt int
}

// answered says whether row has a result of attempt or a later one, or a
// final one (created, already_pending, dry_run): the worker answers every
// later attempt from its ledger with that result, which the results
// stream drops as a repeat.
func (t *tally) answered(row, attempt int) bool {
	if row >= len(t.outcome) || t.outcome[row] == "" {
		return false
	}
	return max(t.attempt[row], 1) >= attempt || t.outcome[row] != offboard.OutcomeFailed
}

// campaignResults reads the results of the campaign's rows stored now:
// the latest of each row.
func (c *cli) campaignResults(ctx context.Context, js jetstream.JetStream, tenant, name string) (*tally, error) {
	t := &tally{}
	var held []*offboard.Result // invalid_request results of rows: the row's own request's, or a malformed copy's
	add := func(n int, r *offboard.Result) {
		v := resultView{RequestID: r.RequestID, Outcome: r.Outcome, Attempt: r.Attempt}
		if r.Error != nil {
			v.Code = r.Error.Code
		}
		t.add(n, v)
	}
	err := scan(ctx, js, offboard.StreamResults, c.subjects.Result(tenant), func(m jetstream.Msg) {
		r, ok := decodeResult(m)
		if !ok {
			return
		}
		if n, ok := campaign.ResultRow(name, r, nil); ok {
			add(n, r)
		} else if _, isRow := campaign.RowOf(name, r.RequestID); isRow {
			held = append(held, r)
		}
	})
	if err != nil || len(held) == 0 {
		return t, err
	}
	// Read after the results: a request answered is in the dead letters
	// by then.
	at, err := rowsAnsweredInvalid(ctx, js, c.subjects, tenant, name)
	if err != nil {
		return nil, err
	}
	own := func(n int, seq uint64) bool { r, ok := at[seq]; return ok && r == n }
	for _, r := range held {
		if n, ok := campaign.ResultRow(name, r, own); ok {
			add(n, r)
		}
	}
	return t, nil
}

func (st *campaignState) count(outcome, code string) {
	switch outcome {
	case "":
		return
	case "created":
		st.Created++
	case "already_pending":
		st.AlreadyPending++
	case "dry_run":
		st.DryRun++
	case "failed":
		st.Failed++
		st.FailedByCode[code]++
	}
	st.Answered++
}

// rowsAnsweredInvalid reads the places in the request stream (the dead
// letters' Mde-Request-Seq) of the campaign's rows' own requests answered
// invalid_request: the dead letters under a row's message id, as campaign
// run (or dead retry, for an attempt) sets it. A malformed copy published
// under a row's own message id counts as the row's: within the stream's
// duplicate window it holds the row's place, and the row's own publish is
// dropped as its duplicate (campaign run takes its result the same way).
func rowsAnsweredInvalid(ctx context.Context, js jetstream.JetStream, s offboard.Subjects, tenant, name string) (map[uint64]int, error) {
	at := map[uint64]int{}
	err := scan(ctx, js, offboard.StreamDead, s.Dead(tenant), func(m jetstream.Msg) {
		h := m.Headers()
		if h.Get(offboard.HeaderErrorCode) != offboard.CodeInvalidRequest {
			return
		}
		seq, err := strconv.ParseUint(h.Get(offboard.HeaderRequestSeq), 10, 64)
		if row, ok := rowOfMsgID(tenant, name, h.Get(jetstream.MsgIDHeader)); ok && err == nil {
			at[seq] = row
		}
	})
	return at, err
}

// rowOfMsgID is the row whose request a message id names, exactly as
// campaign run sets it (<tenant>:<requestId>) or a retry's
// (<tenant>:<requestId>:<attempt>).
func rowOfMsgID(tenant, name, msgID string) (int, bool) {
	id, attempt, ok := requestOfMsgID(tenant, msgID)
	row, isRow := campaign.RowOf(name, id)
	return row, ok && isRow && offboard.RequestMsgID(tenant, id, attempt) == msgID
}
