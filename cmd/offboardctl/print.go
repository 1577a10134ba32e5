package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// printJSON writes v as indented JSON, each character a terminal could
// take for a control escaped (jsonPrintable): status shows what entries
// written by hand hold.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(jsonPrintable(b), '\n'))
	return err
}

// printTable writes the status as an aligned table, then a line for each
// pause in force: who paused and why. What the control bucket holds is
// shown printable: an entry written by hand may hold a line break or a
// terminal escape, which would forge lines.
func printTable(w io.Writer, sts []tenantStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tPAUSED\tBUDGET\tCALLS LEFT\tBACKLOG\tOLDEST\tIN FLIGHT\tETA")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", st.Tenant, pausedCell(st), budgetCell(st.Budget, st.HeldByBudget),
			quotaCell(st), backlogCell(st), oldestCell(st), st.InFlight, etaCell(st))
	}
	_ = tw.Flush()
	printNoWorker(w, sts, now)
	for _, st := range sts {
		for _, p := range control.Priorities {
			if e := st.Pauses[p]; e.Paused {
				fmt.Fprintf(w, "%s: %s paused by %s %s%s\n", st.Tenant, p, printable(e.By), when(e.At, now), because(printable(e.Reason)))
			}
		}
		if b := st.Budget; b.Ignored != "" {
			fmt.Fprintf(w, "%s: budget override %s ignored by the worker: %s\n", st.Tenant, printable(b.Override), b.Ignored)
		}
		switch {
		case st.noneSetUp:
			fmt.Fprintf(w, "%s: no worker has set up any tenant's consumers (a lone NATS server restarted loses them until a worker runs): its controls apply once one does; its backlog is not known\n", st.Tenant)
			continue
		case st.notSetUp:
			fmt.Fprintf(w, "%s: no worker has set up its consumers (not in any tenants file?): its controls apply once one does; its backlog is not known\n", st.Tenant)
			continue
		}
		for _, p := range st.MissingConsumers {
			fmt.Fprintf(w, "%s: its %s consumer is missing (a worker makes it again): its %s backlog is not known\n", st.Tenant, p, p)
		}
		if st.Budget.FileNotKnown {
			fmt.Fprintf(w, "%s: its consumers do not record the tenants file's budget (made by hand, for a worker under --no-setup): a budget the file sets holds the tenant all the same\n", st.Tenant)
		}
		if st.LimitsDefault {
			fmt.Fprintf(w, "%s: its consumers record no limits; the documented 100/1m, 1500/1h are assumed\n", st.Tenant)
		}
	}
}

// printNoWorker says which tenants no worker serves: one line when it is
// every tenant shown (no worker runs), else one per tenant.
func printNoWorker(w io.Writer, sts []tenantStatus, now time.Time) {
	var none []tenantStatus
	for _, st := range sts {
		if st.NoWorker {
			none = append(none, st)
		}
	}
	if len(none) > 1 && len(none) == len(sts) {
		fmt.Fprintf(w, "no worker has announced any of these tenants in the last %s: nothing works their requests\n", noWorkerAfter)
		return
	}
	for _, st := range none {
		since := ""
		if st.LastAnnounced != nil {
			since = " for " + roundAge(now.Sub(*st.LastAnnounced)).String()
		}
		fmt.Fprintf(w, "%s: no worker has announced it%s: nothing works its requests\n", st.Tenant, since)
	}
}

// when says when a control was written, by its writer's clock: how long
// ago, or the time itself when that clock is ahead of this one (an age
// below zero), or that it is not known (an entry written by hand
// without it).
func when(at, now time.Time) string {
	switch d := now.Sub(at); {
	case at.IsZero():
		return "at a time not known"
	case d < 0:
		return "at " + at.UTC().Format(time.RFC3339) + " (by a clock ahead of this one)"
	default:
		return roundAge(d).String() + " ago"
	}
}

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func pausedCell(st tenantStatus) string {
	n, b := st.Paused[offboard.Normal], st.Paused[offboard.Bulk]
	switch {
	case n && b:
		return "all"
	case n:
		return "normal"
	case b:
		return "bulk"
	}
	return "no"
}

// budgetCell is the tenant's budget as status shows it; held is the
// backlog it holds.
func budgetCell(b budgetStatus, held uint64) string {
	s := "file " + printable(b.InForce) // a consumer's metadata
	switch {
	case b.FileNotKnown:
		s = "file's not known"
	case b.InForce == "":
		s = "none"
	}
	switch {
	case b.Override != "" && b.Ignored != "":
		s += " (override " + printable(b.Override) + " ignored)"
	case b.Override != "":
		// Printable too: "\r5/1h" reads as a budget.
		s = printable(b.Override) + " (override)"
	}
	if b.Used == nil {
		return s + ", left n/a"
	}
	s = fmt.Sprintf("%s, used %d, left %d", s, *b.Used, *b.Left)
	if held > 0 {
		s += fmt.Sprintf(", holding %d", held)
	}
	return s
}

func quotaCell(st tenantStatus) string {
	parts := make([]string, 0, len(st.Quota))
	for _, q := range st.Quota {
		label := q.Window
		if w, err := limiter.ParseWindow(q.Window); err == nil {
			label = w.Label()
		}
		parts = append(parts, fmt.Sprintf("%d/%d per %s", q.Left, q.Limit, label))
	}
	s := strings.Join(parts, ", ")
	if st.ThrottledTill != nil {
		s += " (429 pause)"
	}
	return s
}

func backlogCell(st tenantStatus) string {
	cell := func(p offboard.Priority) string {
		if slices.Contains(st.MissingConsumers, p) {
			return "?" // not known: its consumer is missing
		}
		return strconv.FormatUint(st.Backlog[p], 10)
	}
	return fmt.Sprintf("normal %s, bulk %s", cell(offboard.Normal), cell(offboard.Bulk))
}

func oldestCell(st tenantStatus) string {
	oldest := -1.0
	for _, a := range st.OldestAge {
		oldest = max(oldest, a)
	}
	if oldest < 0 {
		return "-"
	}
	return roundAge(fromSeconds(oldest)).String()
}

// fromSeconds is a duration in seconds as a time.Duration, held to the
// longest there is: the longest ETA, in seconds, would come back beyond
// it and wrap around to below zero.
func fromSeconds(secs float64) time.Duration {
	if ns := secs * float64(time.Second); ns < math.MaxInt64 {
		return time.Duration(ns)
	}
	return math.MaxInt64
}

func etaCell(st tenantStatus) string {
	switch {
	case st.ETA == nil:
		return "paused"
	case st.Backlog[offboard.Normal]+st.Backlog[offboard.Bulk] == 0:
		return "-"
	}
	s := "now"
	if *st.ETA >= 1 {
		s = campaign.Human(fromSeconds(*st.ETA)) // as campaign run and campaign status write it
	}
	if st.ETAByBudget {
		s += " (budget)"
	}
	if st.Held > 0 {
		s += " (+paused)"
	}
	return s
}

// roundAge rounds a duration for people: seconds under an hour, minutes
// above.
func roundAge(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	if d > 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
