package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// planAccept is how long a worker serving the tenant may take to take a
// plan request: after it, no worker serves the tenant.
const planAccept = 10 * time.Second

// planAnswerMargin is how much sooner than --timeout the worker is asked
// to give a plan up: its answer's way back (timedOut reads an answer in
// the last second as the flag's running out).
const planAnswerMargin = 500 * time.Millisecond

type planFlags struct {
	tenant, inactiveFor, out string
	health, os               []string
	timeout                  time.Duration
	unknownTenant            bool
	force                    bool // write over an existing --out
}

// newCampaignPlanCmd is `campaign plan`: it asks a worker serving the
// tenant for the devices Defender has not seen for a while, and writes
// them as a CSV that `campaign run` takes as it is.
func newCampaignPlanCmd(c *cli) *cobra.Command {
	var f planFlags
	cmd := &cobra.Command{
		Use:   "plan --tenant T --inactive-for DURATION [--health STATUS]... [--os PLATFORM]... [--out FILE]",
		Short: "List the tenant's devices not seen for DURATION as a campaign CSV",
		Long: `Asks a worker serving the tenant for its devices that Defender has not seen
for at least DURATION (lastSeen older than now - DURATION; Go durations, d
for days too: 90d, 1d12h), optionally only those with one of the --health or --os values,
and writes them, oldest first, as a CSV that "campaign run" takes as it is.
Devices the tenant's guards protect are left out and counted. Nothing is
offboarded; offboardctl needs only its NATS connection.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return c.plan(cmd, f) },
	}
	fl := cmd.Flags()
	onceFlag(fl, &f.tenant, "tenant", "", "tenant (required)")
	onceFlag(fl, &f.inactiveFor, "inactive-for", "", "devices not seen for at least this long: 90d, 2160h (required)")
	fl.StringArrayVar(&f.health, "health", nil, "only devices with this healthStatus (repeat for any of several)")
	fl.StringArrayVar(&f.os, "os", nil, "only devices with this osPlatform (repeat for any of several)")
	onceFlag(fl, &f.out, "out", "", "CSV file to write (default <tenant>-inactive-<DURATION>.csv); an existing one is refused unless --force")
	fl.BoolVar(&f.force, "force", false, "write over an existing --out file (a plan reviewed there is lost)")
	fl.DurationVar(&f.timeout, "timeout", 15*time.Minute, "how long the whole plan may take")
	once(fl, "timeout")
	fl.BoolVar(&f.unknownTenant, "unknown-tenant", false, "ask for a tenant no worker has set up yet (not in any tenants file), waiting up to 10s for a worker to answer")
	return cmd
}

// request checks the flags and makes the plan request.
func (f *planFlags) request() (offboard.PlanRequest, error) {
	switch {
	case f.tenant == "":
		return offboard.PlanRequest{}, usagef("--tenant is required")
	case f.inactiveFor == "":
		return offboard.PlanRequest{}, usagef("--inactive-for is required")
	}
	if !offboard.TenantName.MatchString(f.tenant) {
		return offboard.PlanRequest{}, usagef("--tenant %s is not a tenant name (%s)", offboard.Quote(f.tenant), offboard.TenantName)
	}
	d, err := config.ParseDuration(f.inactiveFor)
	if errors.Is(err, config.ErrTooManyDays) || errors.Is(err, config.ErrTooLong) {
		return offboard.PlanRequest{}, usagef("--inactive-for %s: %v", offboard.Quote(f.inactiveFor), err)
	}
	if err != nil || d <= 0 {
		return offboard.PlanRequest{}, usagef("--inactive-for %s is not a positive duration such as 90d or 2160h", offboard.Quote(queue.RedactURLs(f.inactiveFor)))
	}
	if f.timeout <= 0 {
		return offboard.PlanRequest{}, usagef("--timeout %v: want a positive duration", f.timeout)
	}
	for _, v := range append(append([]string(nil), f.health...), f.os...) {
		switch {
		case strings.TrimSpace(v) == "":
			return offboard.PlanRequest{}, usagef("--health and --os take a value")
		case strings.TrimSpace(v) != v || strings.Contains(v, ","):
			// Defender's values have neither: such a value matches no
			// device, and the plan would be empty without a word.
			return offboard.PlanRequest{}, usagef("--health and --os take one value each, without spaces around it (%s); repeat the flag for several", offboard.Quote(v))
		case strings.ContainsFunc(v, offboard.Unseen):
			// A line break or a zero-width space pasted with the
			// value: no value of Defender's holds one, and the plan
			// would be empty without a word.
			return offboard.PlanRequest{}, usagef("--health and --os take a value without control or formatting characters (%s)", offboard.Quote(v))
		}
	}
	// Defender's inventory filter takes a healthStatus spelled as
	// documented and refuses any other value.
	health, unknown, ok := mde.HealthStatusesSpelled(f.health)
	if !ok {
		return offboard.PlanRequest{}, usagef("--health %s is none of Defender's: want one of %s", offboard.Quote(unknown), strings.Join(mde.HealthStatuses, ", "))
	}
	if f.out == "" {
		f.out = fmt.Sprintf("%s-inactive-%s.csv", f.tenant, f.inactiveFor)
	}
	if err := checkOutputFile("--out", f.out); err != nil {
		return offboard.PlanRequest{}, err
	}
	if err := f.checkNew(); err != nil {
		return offboard.PlanRequest{}, usageError{err}
	}
	return offboard.PlanRequest{InactiveFor: d, Health: health, OS: f.os}, nil
}

func (c *cli) plan(cmd *cobra.Command, f planFlags) error {
	req, err := f.request()
	if err != nil {
		return err
	}
	js, err := c.connect(cmd.Context())
	if err != nil {
		return err
	}
	ranOut := &flagTimeout{f.timeout}
	ctx, cancel := context.WithTimeoutCause(cmd.Context(), f.timeout, ranOut)
	defer cancel()
	if err := c.planTenantKnown(ctx, js, f); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok {
		// A little less than the time left: the worker's answer, which
		// says why it gave the plan up (a wait for the tenant's machines
		// quota, say), comes before --timeout runs out here. Given all of
		// it, the worker, whose count starts when the request reaches it,
		// answered after this deadline, and the error said only that.
		left := time.Until(deadline)
		req.Timeout = left - min(planAnswerMargin, left/10)
	}
	reply, data, err := offboard.RequestPlan(ctx, js, c.subjects, f.tenant, req, planAccept)
	if errors.Is(err, offboard.ErrNoPlanner) {
		return fmt.Errorf("%w (is a worker configured with tenant %s running?)", err, f.tenant)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			// The deadline's own words name no flag.
			return fmt.Errorf("plan: %w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("plan: %w", err)
	}
	if reply.State != offboard.PlanDone {
		msg := "the worker gave no reason"
		if reply.Error != nil {
			// The reason may quote the API's answer: its terminal
			// escapes and line breaks are shown escaped.
			msg = printable(reply.Error.Code + ": " + reply.Error.Message)
		}
		if timedOut(ctx, reply) {
			return fmt.Errorf("no plan for tenant %s: %w (the worker: %s)", f.tenant, ranOut, msg)
		}
		return fmt.Errorf("no plan for tenant %s: %s", f.tenant, msg)
	}
	if err := writeFileAtomic(f.out, data, f.checkNew); err != nil {
		return err
	}
	reply.WriteSummary(c.stdout, f.out)
	emptyWithOS(c.stdout, reply.Count, f.os)
	c.planPaused(ctx, js, f.tenant)
	return nil
}

// emptyWithOS says, under the summary of an empty plan asked with --os,
// how Defender spells osPlatform: the values are not checked (new
// platforms come), and a value it does not spell so (Win10, Windows 11)
// matched no device and gave an empty plan, exit 0, that read as nothing
// to offboard.
func emptyWithOS(w io.Writer, count int, platforms []string) {
	if count > 0 || len(platforms) == 0 {
		return
	}
	quoted := make([]string, len(platforms))
	for i, v := range platforms {
		quoted[i] = offboard.Quote(v)
	}
	fmt.Fprintf(w, "  --os             %s: no device; if some were expected, give osPlatform as Defender spells it "+
		"(Windows10, Windows11, WindowsServer2019, WindowsServer2022, Linux, macOS, ...; in any case)\n", strings.Join(quoted, ", "))
}

// planPaused says, under the summary, when the tenant's bulk requests (a
// campaign run's, by default) are paused: the time the summary gives
// starts only at the resume. Controls that cannot be read say nothing.
func (c *cli) planPaused(ctx context.Context, js jetstream.JetStream, tenant string) {
	view, err := controlView(ctx, js, c.subjects)
	if err != nil {
		return
	}
	e, ok := view.Pause(tenant, offboard.Bulk)
	if !ok || !e.Paused {
		return
	}
	fmt.Fprintf(c.stdout, "  paused           the tenant's bulk requests, by %s: %s; a campaign run's rows wait until offboardctl resume %s --priority bulk\n",
		orNone(printable(e.By)), orNone(printable(e.Reason)), tenant)
}

// planTenantKnown refuses a tenant no worker has set up, unless
// --unknown-tenant: no worker answers for it, and the request would wait
// its 10 s for nothing when something else listens on the plan subjects
// (no "no responders" answer then). The check runs under --timeout
// (ctx), and says so when that runs out.
func (c *cli) planTenantKnown(ctx context.Context, js jetstream.JetStream, f planFlags) error {
	if f.unknownTenant {
		return nil
	}
	kctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := knownTenant(kctx, js, f.tenant, "no plan asked for", "asks")
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("plan: %w (%w)", err, context.Cause(ctx))
	}
	return err
}

// checkNew refuses an --out that exists, unless --force: a plan is
// reviewed by deleting the rows of the devices to keep, and the same
// command run again would write them back, for campaign run to offboard.
func (f *planFlags) checkNew() error {
	if f.force {
		return nil
	}
	if _, err := os.Lstat(f.out); err == nil {
		return fmt.Errorf("--out %s exists, and a plan reviewed there would be lost: give another --out, or --force to write over it", f.out)
	}
	return nil
}

// timedOut says whether the worker gave the plan up as --timeout ran out:
// it is given the time left of it, so it gives the plan up a moment
// before ctx's deadline, and its answer may come first.
func timedOut(ctx context.Context, reply *offboard.PlanReply) bool {
	deadline, ok := ctx.Deadline()
	return reply.OutOfTime && ok && time.Until(deadline) < time.Second
}

// writeFileAtomic writes the file whole or not at all, readable by its
// owner only: it lists device names. check runs again just before the
// file takes its name (an --out written meanwhile).
func writeFileAtomic(path string, data []byte, check func() error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The name may have become something else than a file since the
	// checks, or a file.
	if err := checkReplaceable("--out", path); err != nil {
		return err
	}
	if err := check(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
