package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func init() { commands = append(commands, pauseCommand, resumeCommand, budgetCommand) }

// who says who made a change, and why; unknownTenant lets a control
// command change a tenant no worker serves yet.
type who struct {
	as, reason string
	// asFlag is the flag that gave as, named in its errors: --as unless
	// set (campaign cancel's old --by).
	asFlag        string
	unknownTenant bool
}

func (w *who) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&w.as, "as", defaultUser(), "who makes the change, for the audit trail")
	cmd.Flags().StringVar(&w.reason, "reason", "", "why, for the audit trail (a change ticket, an incident)")
	// Given twice with two values, one would be lost from the audit
	// trail without a word.
	once(cmd.Flags(), "as")
	once(cmd.Flags(), "reason")
}

// tenantFlag adds --unknown-tenant to a control command.
func (w *who) tenantFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.unknownTenant, "unknown-tenant", false, "change a tenant no worker has set up yet (not in any tenants file)")
}

// maxAs and maxReason bound --as and --reason, in characters: status
// shows each on a line, every replica logs them, and the audit event
// carries them. A reason is a ticket and a few words; as long as a
// request's comment at most.
const (
	maxAs     = 128
	maxReason = offboard.MaxCommentLength
)

// check refuses who and why that are not one line of text: they are
// shown in status, one line each, and a newline or a terminal control
// would forge lines there.
func (w *who) check() error {
	asFlag := cmp.Or(w.asFlag, "--as")
	if !strings.ContainsFunc(w.as, func(r rune) bool { return unicode.IsGraphic(r) && !unicode.IsSpace(r) && !offboard.Unseen(r) }) {
		return usagef("%s is empty: say who makes the change", asFlag)
	}
	// Zero-width and tag characters, Hangul fillers, variation selectors
	// on their own: a name that looks like another. As in a request's
	// texts, the joiners of a word or an emoji and the selector of an
	// emoji or an ideograph stay: Persian and Sinhala names are spelt
	// with them.
	if hidden(w.as) {
		return usagef("%s holds an invisible character: give the name as it reads", asFlag)
	}
	if hidden(w.reason) {
		return usagef("--reason holds an invisible character: give it as it reads")
	}
	for _, f := range []struct {
		name, v string
		most    int
	}{{asFlag, w.as, maxAs}, {"--reason", w.reason, maxReason}} {
		if !oneLine(f.v) {
			return usagef("%s holds a control character (a newline, a tab, an escape, ...) or is not UTF-8: give one line of text", f.name)
		}
		if n := utf8.RuneCountInString(f.v); n > f.most {
			return usagef("%s is %d characters long: give at most %d", f.name, n, f.most)
		}
	}
	return nil
}

// hidden is offboard.Hidden, control characters aside: oneLine refuses
// those, with its own words.
func hidden(s string) bool {
	return offboard.Hidden(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}

// oneLine says whether s is valid UTF-8 without control characters, line
// or paragraph separators, or the bidirectional controls that reorder
// what a terminal shows. Other format characters stay: emoji sequences
// and scripts such as Persian need the zero-width joiners.
func oneLine(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control)
	})
}

// defaultUser is the operating system's user name.
func defaultUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, v := range []string{"USER", "USERNAME"} {
		if s := os.Getenv(v); s != "" {
			return s
		}
	}
	return "unknown"
}

func pauseCommand(c *cli) *cobra.Command  { return pauseResume(c, control.ActionPause) }
func resumeCommand(c *cli) *cobra.Command { return pauseResume(c, control.ActionResume) }

func pauseResume(c *cli, action string) *cobra.Command {
	var (
		w        who
		priority string
	)
	short := "Stop starting offboard calls for a tenant; its requests wait in the stream"
	if action == control.ActionResume {
		short = "Undo a pause: the tenant's waiting requests go on"
	}
	cmd := &cobra.Command{
		Use:   action + " TENANT",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTenantArg(args[0]); err != nil {
				return err
			}
			if err := w.check(); err != nil {
				return err
			}
			if priority == "" {
				return usagef("--priority is empty: want normal, bulk or all")
			}
			if _, err := control.ParsePriority(priority); err != nil {
				return usageError{err}
			}
			return c.apply(cmd.Context(), control.Change{
				Tenant: args[0], Action: action, Priority: priority, By: w.as, Reason: w.reason,
			}, w)
		},
	}
	onceFlag(cmd.Flags(), &priority, "priority", control.PriorityAll, "normal, bulk or all")
	w.flags(cmd)
	w.tenantFlag(cmd)
	return cmd
}

func budgetCommand(c *cli) *cobra.Command {
	var (
		w       who
		clearIt bool
	)
	cmd := &cobra.Command{
		Use:   "budget TENANT (COUNT/DURATION | --clear)",
		Short: "Override the tenant's budget of offboarded devices, or go back to the tenants file's",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTenantArg(args[0]); err != nil {
				return err
			}
			if err := w.check(); err != nil {
				return err
			}
			ch := control.Change{Tenant: args[0], Action: control.ActionBudgetClear, By: w.as, Reason: w.reason}
			switch {
			case clearIt && len(args) == 1:
			case !clearIt && len(args) == 2:
				bw, err := limiter.ParseBudget(args[1])
				if err != nil {
					return usagef("budget: %v", err)
				}
				if err := c.checkBudgetWindow(cmd.Context(), bw); err != nil {
					return err
				}
				// Stored one way only (+5/60m as 5/1h), as status, the
				// audit event and the worker's logs show it; without the
				// space around it, which would break status's lines.
				ch.Action, ch.Value = control.ActionBudget, bw.Spec()
			default:
				return usagef("budget takes TENANT and either COUNT/DURATION (500/24h) or --clear")
			}
			return c.apply(cmd.Context(), ch, w)
		},
	}
	cmd.Flags().BoolVar(&clearIt, "clear", false, "remove the override: the tenants file's budget applies again")
	cmd.SetFlagErrorFunc(budgetFlagError)
	w.flags(cmd)
	w.tenantFlag(cmd)
	return cmd
}

// budgetFlagError says what is wrong with a negative budget (-1/24h),
// which reads as the flags -1, -/, ...: not "unknown shorthand flag".
// Every other flag error is flagError's, which does not show the value:
// a password given to the wrong flag was quoted whole.
func budgetFlagError(cmd *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		if s := ne.GetSpecifiedShortnames(); s != "" && '0' <= s[0] && s[0] <= '9' {
			if _, perr := limiter.ParseBudget("-" + s); perr != nil {
				return usagef("budget: %v", perr)
			}
		}
	}
	return flagError(cmd, err)
}

// checkBudgetWindow refuses a budget whose window the budget journal
// cannot count: the worker would ignore it (internal/worker/budget.go).
func (c *cli) checkBudgetWindow(ctx context.Context, w limiter.Window) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	h, err := readBudgetHorizon(ctx, js)
	if err != nil {
		return err
	}
	if h.limited && w.Length > h.longest {
		return usagef("budget %s: the worker would ignore it: the longest window it counts is %s (stream %s keeps %s, less the %s lease and the %s margin; see the worker's --budget-history)",
			w.Spec(), h.longest, offboard.StreamBudget, h.history, queue.BudgetLease, queue.DefaultQuotaMargin)
	}
	return nil
}

// apply writes a change and says what it did.
func (c *cli) apply(ctx context.Context, ch control.Change, w who) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if !w.unknownTenant {
		if err := knownTenant(ctx, js, ch.Tenant, "nothing changed", "changes it"); err != nil {
			return err
		}
	}
	store, err := control.Open(ctx, js, c.subjects)
	if err != nil {
		return err
	}
	ev, err := store.Apply(ctx, ch)
	if err != nil {
		return err
	}
	after := inForce{held: stillPaused(ctx, store, ev)}
	if ev.Action == control.ActionBudgetClear {
		after.file, after.fileKnown = fileBudget(ctx, js, ev.Tenant)
	}
	fmt.Fprintln(c.stdout, describe(ev, after))
	return nil
}

// inForce is what a change leaves in force besides itself, as describe
// tells it.
type inForce struct {
	// held is the priority a resume of the other one leaves paused; ""
	// for none.
	held offboard.Priority
	// file is the tenants file's budget a cleared override goes back to
	// ("" none), when fileKnown.
	file      string
	fileKnown bool
}

// fileBudget is the tenants file's budget of the tenant, as the worker
// records it in its consumers (status reads it there too): "" when the
// file sets none. known is false when no worker has set up the tenant
// (--unknown-tenant), its consumer cannot be read, or it does not record
// the file's budget (made by hand: fileBudgetRecorded).
func fileBudget(ctx context.Context, js jetstream.JetStream, tenant string) (budget string, known bool) {
	cons, err := tenantConsumer(ctx, js, tenant)
	if err != nil || cons == nil {
		return "", false
	}
	meta := cons.CachedInfo().Config.Metadata
	if !fileBudgetRecorded(meta) {
		return "", false
	}
	budget = meta[queue.MetaBudget]
	if w, err := limiter.ParseWindow(budget); err == nil {
		budget = w.Spec() // 500/24h, not the 500/24h0m0s recorded
	}
	return budget, true
}

// stillPaused is the priority a resume of the other one leaves paused
// (a pause of all, then a resume of bulk), "" when none or when the
// controls cannot be read again: the resume stands either way.
func stillPaused(ctx context.Context, store *control.Store, ev control.Event) offboard.Priority {
	if ev.Action != control.ActionResume || ev.Priority == control.PriorityAll {
		return ""
	}
	view, err := store.Load(ctx)
	if err != nil {
		return ""
	}
	for _, p := range control.Priorities {
		if string(p) != ev.Priority && view.Paused(ev.Tenant, p) {
			return p
		}
	}
	return ""
}

// knownTenant refuses a tenant no worker has set up (its consumers are how
// status finds tenants): a typo would change nothing that runs, and say
// it did. undone says what the command did not do ("nothing changed"),
// override what --unknown-tenant makes it do ("changes it"; empty: the
// command has no such flag).
func knownTenant(ctx context.Context, js jetstream.JetStream, tenant, undone, override string) error {
	if cons, err := tenantConsumer(ctx, js, tenant); err != nil || cons != nil {
		return err
	}
	// Without the request stream no tenant has consumers: no worker has
	// made the streams yet, and the tenant is not the mistake (run says
	// what to do of a missing stream). Another error (a user who may not
	// read the stream) leaves the tenant's.
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", offboard.StreamRequests, err)
	}
	msg := fmt.Sprintf("tenant %s: no worker has set up its consumers (not in any tenants file?); %s. offboardctl status lists the tenants", tenant, undone)
	// With no tenant's consumers at all (a lone NATS server restarted
	// loses them until a worker makes them again), the tenant cannot be
	// checked: it is no more a typo than any other, and status lists
	// none.
	if err == nil {
		if tenants, err := listTenants(ctx, stream); err == nil && len(tenants) == 0 {
			msg = fmt.Sprintf("tenant %s cannot be checked: no worker has set up any tenant's consumers (a lone NATS server restarted loses them until a worker runs); %s", tenant, undone)
		}
	}
	if override != "" {
		msg += "; --unknown-tenant " + override + " all the same"
	}
	return errors.New(msg)
}

// describe is one line on a change made, and on what it left in force:
// the priority a resume left paused, the budget a cleared override went
// back to.
func describe(ev control.Event, after inForce) string {
	var b strings.Builder
	switch ev.Action {
	case control.ActionPause:
		fmt.Fprintf(&b, "paused %s (%s): no new offboard call starts; requests wait in the stream", ev.Tenant, ev.Priority)
	case control.ActionResume:
		fmt.Fprintf(&b, "resumed %s (%s): waiting requests go on", ev.Tenant, ev.Priority)
		if held := after.held; held != "" {
			fmt.Fprintf(&b, "; %s stays paused (offboardctl resume %s --priority %s)", held, ev.Tenant, held)
		}
	case control.ActionBudget:
		fmt.Fprintf(&b, "budget of %s set to %s", ev.Tenant, ev.Value)
	case control.ActionBudgetClear:
		fmt.Fprintf(&b, "budget override of %s cleared: ", ev.Tenant)
		switch {
		case !after.fileKnown:
			b.WriteString("the tenants file's budget applies")
		case after.file == "":
			// "The file's budget applies" read as a cap still in force.
			b.WriteString("the tenants file sets no budget, so none applies")
		default:
			fmt.Fprintf(&b, "the tenants file's budget applies, %s", printable(after.file))
		}
	}
	fmt.Fprintf(&b, "; by %s", ev.By)
	if ev.Reason != "" {
		fmt.Fprintf(&b, " (%s)", ev.Reason)
	}
	fmt.Fprintf(&b, "; see offboardctl status %s", ev.Tenant)
	return b.String()
}

// rangeArgs is cobra.RangeArgs with a usage error.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return argCountError(cmd, len(args))
		}
		return nil
	}
}
