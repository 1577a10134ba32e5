package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func newCampaignStatusCmd(c *cli) *cobra.Command {
	var tenant, name, rate string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status --tenant T --name NAME",
		Short: "A campaign's results so far by outcome, its requests waiting, and an ETA",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTenant(tenant); err != nil {
				return err
			}
			if err := checkName(name); err != nil {
				return err
			}
			var ws []campaign.Window // nil: the tenant's own (campaignWindows)
			if rate != "" {
				var err error
				if ws, err = campaign.ParseWindows(rate); err != nil {
					return usageError{err}
				}
			}
			return c.showCampaign(cmd.Context(), tenant, name, ws, asJSON)
		},
	}
	onceFlag(cmd.Flags(), &tenant, "tenant", "", "tenant (required)")
	onceFlag(cmd.Flags(), &name, "name", "", "campaign name (required)")
	cmd.Flags().StringVar(&rate, "rate", "", "the tenant's offboard limits for the ETA, as 100/1m,1500/1h (default: those its worker recorded, else the documented ones)")
	once(cmd.Flags(), "rate")
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON output")
	return cmd
}

func (c *cli) showCampaign(ctx context.Context, tenant, name string, ws []campaign.Window, asJSON bool) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ws = c.campaignWindows(ctx, js, tenant, ws)
	st, err := c.campaignStatus(ctx, js, tenant, name)
	if err != nil {
		return err
	}
	// Read only: a control bucket that does not exist holds no cancel,
	// and is not made here (with offboardctl's defaults, not the
	// worker's settings or deploy/nats's).
	started := false
	if kv, err := js.KeyValue(ctx, offboard.BucketControl); err == nil {
		m, err := campaign.GetMark(ctx, kv, tenant, name)
		if err != nil {
			return err
		}
		// A run's record is no cancel: the campaign exists, nothing more.
		if started = m != nil && !m.Started.IsZero(); m != nil && m.Cancelled {
			st.Cancelled = m
		}
	}
	if st.Answered == 0 && st.Waiting == 0 && st.Cancelled == nil && !started {
		// A typo, or the CSV's file name for the campaign's: zeros would
		// read as a campaign with nothing left to do.
		return fmt.Errorf("tenant %s has no campaign %s: none of its requests waits or was answered", tenant, name)
	}
	view, horizon, err := readControls(ctx, js, c.subjects)
	if err != nil {
		return err
	}
	// The campaign's last request waits behind the tenant's normal
	// backlog, and behind its bulk one too while a request of the
	// campaign waits there (its own requests among them): bulk never
	// delays normal, as campaign run counts it. A paused normal backlog
	// waits while bulk goes on: it is not ahead of bulk.
	inFlight := 0
	var infos []*jetstream.ConsumerInfo
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		waiting, fetched, info, err := backlog(ctx, js, tenant, p)
		if err != nil {
			return err
		}
		n := int(min(waiting+fetched, uint64(math.MaxInt32)))
		st.Backlog += n
		if aheadOf(p, st.waitingBy, view.Paused(tenant, offboard.Normal)) {
			st.ahead += n
			inFlight += int(min(fetched, uint64(math.MaxInt32)))
			infos = append(infos, info)
		}
	}
	// Another cancelled campaign's requests waiting are answered without
	// a call; this one's, when cancelled, campaignETA leaves out.
	st.ahead = max(st.ahead-withdrawnAhead(ctx, js, readCancels(ctx, js), tenant, infos, name), 0)
	if err := c.campaignETA(ctx, js, st, ws, inFlight, view, horizon); err != nil {
		return err
	}
	if st.Waiting > 0 {
		st.LastAnnounced, st.NoWorker = workersOf(readAnnounced(ctx, js), tenant, time.Now())
	}
	if asJSON {
		// A cancel mark written by hand, and a result's error code, are
		// shown with what a terminal acts on escaped, as status shows
		// its entries.
		return printJSON(c.stdout, st)
	}
	st.print(c)
	return nil
}

// aheadOf says whether the tenant's backlog of priority p is served
// before the campaign's last request, waitingBy its requests waiting by
// priority: the normal backlog unless normal is paused while a request of
// the campaign waits in bulk, the bulk one while one waits there.
func aheadOf(p offboard.Priority, waitingBy map[offboard.Priority]int, normalPaused bool) bool {
	if p == offboard.Bulk {
		return waitingBy[offboard.Bulk] > 0
	}
	return !normalPaused || waitingBy[offboard.Bulk] == 0
}

// campaignETA sets the campaign's ETA: "paused" while a pause holds every
// request of it waiting, else the quota's pace over the tenant's backlog,
// or the budget's when that is slower. A pause holds no request of a
// cancelled campaign: the worker answers them cancelled, paused or not.
func (c *cli) campaignETA(ctx context.Context, js jetstream.JetStream, st *campaignState, ws []campaign.Window, inFlight int,
	view *control.View, horizon budgetHorizon,
) error {
	st.Paused = st.Waiting > 0 && st.Cancelled == nil
	for p, n := range st.waitingBy {
		if n > 0 {
			st.Paused = st.Paused && view.Paused(st.Tenant, p)
		}
	}
	switch {
	case st.Paused:
		st.ETA = "paused"
	case st.Waiting > 0:
		ahead := st.ahead
		if st.Cancelled != nil {
			// Its own requests are answered cancelled, without a call:
			// only the tenant's others take quota or budget.
			ahead = max(ahead-st.Waiting, 0)
			inFlight = min(inFlight, ahead)
		}
		now := time.Now()
		eta := campaign.Estimate{Ahead: ahead, Windows: ws, Quota: c.campaignQuota(ctx, js, st.Tenant, ws, ahead, inFlight, now)}.ETA()
		byBudget := false
		// The tenant's budget in force holds the backlog to its own pace,
		// each request counted as an action (a dry run's is not: errs long).
		pace, err := c.tenantBudget(ctx, js, st.Tenant, view, horizon, now)
		if err != nil {
			return err
		}
		if pace != nil && ahead > 0 {
			if b := pace.eta(ahead-inFlight, inFlight, now); b > eta {
				eta, byBudget = b, true
			}
		}
		secs := eta.Seconds()
		st.ETASeconds, st.ETA = &secs, campaign.Human(eta)
		if byBudget {
			st.ETA += " (budget)"
		}
	default:
		st.ETASeconds, st.ETA = new(float64), "0s"
	}
	return nil
}

// campaignQuota is the quota's time for the backlog ahead after the calls
// already made in the windows (journalETA); 0, with a line on stderr,
// when the quota journal cannot be read: the windows then count from
// empty, and the ETA is no reason to fail the status.
func (c *cli) campaignQuota(ctx context.Context, js jetstream.JetStream, tenant string, ws []campaign.Window, ahead, inFlight int, now time.Time) time.Duration {
	d, err := c.journalETA(ctx, js, tenant, ws, ahead-inFlight, inFlight, now)
	if err != nil {
		fmt.Fprintf(c.stderr, "offboardctl: the ETA counts the quota windows from empty: tenant %s's quota journal was not read: %v\n", tenant, err)
		return 0
	}
	return d
}

func (st *campaignState) print(c *cli) {
	w := c.stdout
	fmt.Fprintf(w, "campaign %s (tenant %s)\n", st.Name, st.Tenant)
	if m := st.Cancelled; m != nil && m.Cancelled {
		fmt.Fprintf(w, "  cancelled  %s by %s: %s\n", m.At.Format("2006-01-02 15:04:05Z07:00"), orNone(printable(m.By)), orNone(printable(m.Reason)))
	}
	fmt.Fprintf(w, "  answered   %d: created %d, already_pending %d, dry_run %d, failed %d\n",
		st.Answered, st.Created, st.AlreadyPending, st.DryRun, st.Failed)
	if len(st.FailedByCode) > 0 {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(st.FailedByCode)) {
			parts = append(parts, fmt.Sprintf("%s %d", printable(code), st.FailedByCode[code]))
		}
		fmt.Fprintf(w, "  failed     %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "  waiting    %d (tenant backlog %d)\n", st.Waiting, st.Backlog)
	fmt.Fprintf(w, "  ETA        %s\n", st.ETA)
	if st.NoWorker {
		since := ""
		if st.LastAnnounced != nil {
			since = " for " + roundAge(time.Since(*st.LastAnnounced)).String()
		}
		fmt.Fprintf(w, "  no worker has announced tenant %s%s: nothing works its requests; the ETA is what they take once one runs\n", st.Tenant, since)
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
