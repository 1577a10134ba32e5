package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func init() { commands = append(commands, newResultsCmd) }

// resultsFilter is what results lists: every condition given holds.
type resultsFilter struct {
	requestID, machineID, name, outcome, since string

	sinceAt time.Time // from since, when given
}

func newResultsCmd(c *cli) *cobra.Command {
	var f resultsFilter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "results TENANT [--request-id ID] [--machine-id ID] [--name DNSNAME] [--outcome OUTCOME] [--since DURATION]",
		Short: "List a tenant's stored results: who asked for which device, when, and what came of it",
		Long: `List a tenant's results as the worker stored them (MDE_OFFBOARD_RESULTS),
oldest first: when each was stored, the request id and its attempt, the
outcome, the device, who asked and from where, and the Machine Action or
the failure. Every filter given must hold. The results kept are those of
the results stream's max age (--results-max-age of the worker).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s takes one tenant; see %s --help", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := args[0]
			if err := checkTenantArg(tenant); err != nil {
				return err
			}
			if err := f.check(time.Now()); err != nil {
				return err
			}
			list := newListing(c.stdout, asJSON, resultsHeader)
			err := c.eachResult(cmd.Context(), tenant, f.sinceAt, func(m jetstream.Msg, r *offboard.Result) {
				if f.match(r) {
					list.addResult(m, r)
				}
			})
			return list.end(list.cutShort(cmd.Context(), err))
		},
	}
	fl := cmd.Flags()
	onceFlag(fl, &f.requestID, "request-id", "", "only the results of this request id")
	onceFlag(fl, &f.machineID, "machine-id", "", "only the results for this device id (40 hexadecimal characters)")
	onceFlag(fl, &f.name, "name", "", "only the results for this computerDnsName (any case, a final dot aside)")
	onceFlag(fl, &f.outcome, "outcome", "", "only results of this outcome: "+joinOutcomes())
	onceFlag(fl, &f.since, "since", "", "only results stored within this long: 24h, 30d")
	fl.BoolVar(&asJSON, "json", false, "JSON output: the results as stored")
	return cmd
}

// check refuses a filter that could match nothing by its form, in one
// line, and reads --since against now.
func (f *resultsFilter) check(now time.Time) error {
	if f.requestID != "" && !offboard.ValidRequestID(f.requestID) {
		return usagef("--request-id %s is not a request id: [A-Za-z0-9._:-]{1,128}", offboard.Quote(f.requestID))
	}
	if f.machineID != "" && !offboard.ValidMachineID(f.machineID) {
		return usagef("--machine-id %s is not a device id: 40 hexadecimal characters", offboard.Quote(f.machineID))
	}
	if f.name != "" && !offboard.ValidDNSName(f.name) {
		// "." (--name "$HOST." with HOST unset) matched every result
		// without a name, as if they were that device's.
		return usagef("--name %s is not a DNS name: labels of letters, digits, '-' and '_', joined by dots", offboard.Quote(f.name))
	}
	if f.outcome != "" && !slices.Contains(offboard.Outcomes, offboard.Outcome(f.outcome)) {
		return usagef("--outcome %s is none of %s", offboard.Quote(f.outcome), joinOutcomes())
	}
	if f.since != "" {
		d, err := config.ParseDuration(f.since)
		if errors.Is(err, config.ErrTooManyDays) || errors.Is(err, config.ErrTooLong) {
			return usagef("--since %s: %v", offboard.Quote(f.since), err)
		}
		if err != nil || d <= 0 {
			return usagef("--since %s is not a positive duration such as 24h or 30d", offboard.Quote(queue.RedactURLs(f.since)))
		}
		f.sinceAt = now.Add(-d)
	}
	return nil
}

// match says whether r holds every condition given.
func (f *resultsFilter) match(r *offboard.Result) bool {
	switch {
	case f.requestID != "" && r.RequestID != f.requestID:
	case f.machineID != "" && !strings.EqualFold(r.MachineID, f.machineID):
	case f.name != "" && !strings.EqualFold(strings.TrimSuffix(r.ComputerDNSName, "."), strings.TrimSuffix(f.name, ".")):
	case f.outcome != "" && string(r.Outcome) != f.outcome:
	default:
		return true
	}
	return false
}

func joinOutcomes() string {
	names := make([]string, len(offboard.Outcomes))
	for i, o := range offboard.Outcomes {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

// eachResult hands fn each result of tenant stored at or after since
// (zero: every one kept), oldest first. A message on the subject that is
// no result is passed over. With none read, a tenant no worker has set
// up (a typo) is told so.
func (c *cli) eachResult(ctx context.Context, tenant string, since time.Time, fn func(jetstream.Msg, *offboard.Result)) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	seen := false
	err = scanWaiting(ctx, js, offboard.StreamResults, c.subjects.Result(tenant), since, scanWait, func(m jetstream.Msg) {
		seen = true
		if r, ok := decodeResult(m); ok {
			fn(m, r)
		}
	})
	if err != nil || seen {
		return err
	}
	kctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return knownTenant(kctx, js, tenant, "it has no results either", "")
}

// resultsHeader is the header of results' table.
const resultsHeader = "STORED\tREQUEST ID\tATTEMPT\tOUTCOME\tDEVICE\tNAME\tREQUESTED BY\tSOURCE\tACTION / ERROR"

// addResult lists a result: as stored (JSON), or as a row.
func (l *listing) addResult(m jetstream.Msg, r *offboard.Result) {
	if l.json() {
		var b bytes.Buffer
		err := json.Indent(&b, m.Data(), "  ", "  ")
		l.item(b.Bytes(), err)
		return
	}
	stored := "-"
	if meta, err := m.Metadata(); err == nil {
		stored = meta.Timestamp.UTC().Format(time.RFC3339)
	}
	l.row("%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s", stored, shownID(r.RequestID), max(r.Attempt, 1), printable(string(r.Outcome)),
		orNone(printable(r.MachineID)), orNone(printable(r.ComputerDNSName)), orNone(printable(r.RequestedBy)), orNone(printable(r.Source)), actionOrError(r))
}

// actionOrError is a result's Machine Action (its id and status) or its
// failure (code and message, cut to 80 characters).
func actionOrError(r *offboard.Result) string {
	if r.Error != nil {
		msg := printable(r.Error.Code + ": " + r.Error.Message)
		if rs := []rune(msg); len(rs) > 80 {
			msg = string(rs[:79]) + "…"
		}
		return msg
	}
	var a struct{ ID, Status string }
	if json.Unmarshal(r.MachineAction, &a) != nil || a.ID == "" {
		return "-"
	}
	return printable(strings.TrimSpace(a.ID + " " + a.Status))
}
