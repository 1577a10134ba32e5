package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func init() { commands = append(commands, guardsCommand) }

// guardsWait bounds the wait for the replicas' answers: a live replica
// answers at once, from memory.
const guardsWait = 2 * time.Second

// guardsShown is how many entries of a protect list the table shows;
// --json shows them all.
const guardsShown = 5

func guardsCommand(c *cli) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "guards [TENANT]",
		Short: "Show each tenant's guards as the replicas serving it hold them, and whether they agree",
		Long: `Asks every worker replica serving the tenant (every tenant a replica serves,
without TENANT) for the guards its tenants file sets: the protect lists,
requireInactiveFor and the budget, with the budget override in force.
When the replicas serving a tenant hold other guards, it says so first,
names the replicas and shows what differs. Exit status 0 when every
tenant's replicas agree, 1 when they do not, when a replica does not
answer, or when no worker serves the tenant. With --json, guards that
differ or a replica that does not answer are in the JSON; a failure that
leaves nothing to show (no worker serves the tenant, NATS not reached)
writes nothing on standard output, as status --json does, and its one
line on standard error.`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := ""
			if len(args) == 1 {
				if err := checkTenantArg(args[0]); err != nil {
					return err
				}
				tenant = args[0]
			}
			return c.guards(cmd.Context(), tenant, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine output: a JSON object, one entry per tenant")
	return cmd
}

// tenantGuards is what guards shows of one tenant.
type tenantGuards struct {
	Tenant string `json:"tenant"`
	// Agree says every replica serving the tenant holds the same guards
	// (their digests are one) and every one answered.
	Agree bool `json:"agree"`
	// Replicas are the replicas serving the tenant, live at the look.
	Replicas []string `json:"replicas"`
	// Guards holds one entry per set of guards the replicas hold: one
	// when they agree.
	Guards []guardsHeld `json:"guards"`
	// Differ names the fields that differ between the entries of
	// Guards (protect.computerDnsNames, requireInactiveFor, budget).
	Differ []string `json:"differ,omitempty"`
	// NotAnswered are the replicas that announced the tenant and did
	// not answer within guardsWait: their guards are not shown.
	NotAnswered []string `json:"notAnswered,omitempty"`
	// DifferNotAnswered are those of NotAnswered that announced guards
	// no replica that answered holds, by the digest announced: the
	// guards differ by them, though Differ cannot name the fields.
	DifferNotAnswered []guardsAnnounced `json:"differNotAnswered,omitempty"`
	// BudgetOverride is the operators' override (offboardctl budget),
	// one for every replica; nil: none.
	BudgetOverride *guardsOverride `json:"budgetOverride,omitempty"`
	// differ says the replicas' digests, those announced by the ones
	// that did not answer included, are not one.
	differ bool
}

// guardsAnnounced is a digest of guards announced by replicas that did
// not answer, and those replicas.
type guardsAnnounced struct {
	Replicas []string `json:"replicas"`
	Digest   string   `json:"digest"`
}

// guardsHeld is one set of guards and the replicas that hold it.
type guardsHeld struct {
	Replicas           []string               `json:"replicas"`
	Digest             string                 `json:"digest"`
	Protect            offboard.GuardsProtect `json:"protect"`
	RequireInactiveFor string                 `json:"requireInactiveFor,omitempty"`
	Budget             string                 `json:"budget,omitempty"` // the tenants file's
}

type guardsOverride struct {
	Budget string `json:"budget"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Ignored says why the worker does not apply it; empty: it does.
	Ignored string `json:"ignored,omitempty"`
}

type guardsOutput struct {
	Tenants []*tenantGuards `json:"tenants"`
}

func (c *cli) guards(ctx context.Context, tenant string, asJSON bool) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, statusLimit(c.timeout))
	defer cancel()
	announced, err := queue.ReadAnnounced(ctx, js)
	if err != nil {
		return err
	}
	serving := servingReplicas(announced, time.Now())
	tenants := slices.Sorted(maps.Keys(serving))
	switch {
	case tenant != "" && len(serving[tenant]) == 0:
		return fmt.Errorf("no worker serves tenant %s (no replica announced it within %v)", tenant, noWorkerAfter)
	case tenant != "":
		tenants = []string{tenant}
	case len(tenants) == 0:
		return fmt.Errorf("no worker serves any tenant (no replica announced itself within %v)", noWorkerAfter)
	}
	replies, err := gatherGuards(ctx, c.nc, c.subjects, tenants, serving)
	if err != nil {
		return err
	}
	view, horizon, err := readControls(ctx, js, c.subjects)
	if err != nil {
		return err
	}
	out := guardsOutput{}
	for _, t := range tenants {
		tg := compareGuards(t, serving[t], replies[t])
		tg.BudgetOverride = overrideOf(t, view, horizon)
		out.Tenants = append(out.Tenants, tg)
	}
	if asJSON {
		err = printJSON(c.stdout, out)
	} else {
		printGuards(c.stdout, out.Tenants)
	}
	if err != nil {
		return err
	}
	return guardsVerdict(out.Tenants)
}

// servingReplicas is, for each tenant, the replicas that announced it
// within noWorkerAfter and their announced guards digest ("": none
// announced, a release before it). now is this machine's clock, At the
// server's, as status compares them.
func servingReplicas(announced []queue.Announced, now time.Time) map[string]map[string]string {
	serving := map[string]map[string]string{}
	for _, a := range announced {
		if now.Sub(a.At) > noWorkerAfter {
			continue
		}
		for _, t := range a.Tenants {
			if serving[t] == nil {
				serving[t] = map[string]string{}
			}
			serving[t][a.Replica] = a.Guards[t]
		}
	}
	return serving
}

// gatherGuards asks the replicas serving each tenant for its guards, on
// one inbox, and reads their answers until every one expected answered
// or guardsWait passed: by tenant, then replica.
func gatherGuards(ctx context.Context, nc *nats.Conn, subjects offboard.Subjects, tenants []string, serving map[string]map[string]string) (map[string]map[string]offboard.GuardsReply, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the answers: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	expected, err := askGuards(ctx, nc, subjects, tenants, serving, inbox)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, guardsWait)
	defer cancel()
	g := guardsAnswers{tenants: tenants, serving: serving, replies: map[string]map[string]offboard.GuardsReply{},
		parts: map[guardsFrom][]offboard.GuardsReply{}}
	for got := 0; got < expected; {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break // the replicas not heard from are told as such
		}
		if g.add(m.Data) {
			got++
		}
	}
	return g.replies, nil
}

// askGuards publishes the question of each tenant's guards, answered on
// inbox, and says how many answers the replicas serving them make.
func askGuards(ctx context.Context, nc *nats.Conn, subjects offboard.Subjects, tenants []string, serving map[string]map[string]string, inbox string) (int, error) {
	expected := 0
	for _, t := range tenants {
		expected += len(serving[t])
		if err := nc.PublishRequest(subjects.Guards(t), inbox, nil); err != nil {
			return 0, fmt.Errorf("ask for the guards of %s: %w", t, err)
		}
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return 0, fmt.Errorf("ask for the guards: %w", err)
	}
	return expected, nil
}

// guardsFrom is a tenant's answer from one replica.
type guardsFrom struct{ tenant, replica string }

// guardsAnswers gathers the answers of gatherGuards: the whole ones by
// tenant and replica, and the parts of answers too large for one message
// (Encode) until all of an answer's are there.
type guardsAnswers struct {
	tenants []string
	serving map[string]map[string]string
	replies map[string]map[string]offboard.GuardsReply
	parts   map[guardsFrom][]offboard.GuardsReply
}

// add reads one message; it says whether it completed the first answer
// of a replica expected to answer.
func (g *guardsAnswers) add(data []byte) bool {
	var r offboard.GuardsReply
	if json.Unmarshal(data, &r) != nil || !slices.Contains(g.tenants, r.Tenant) || r.Replica == "" {
		return false
	}
	if r.Parts > 1 {
		k := guardsFrom{r.Tenant, r.Replica}
		g.parts[k] = append(g.parts[k], r)
		whole, ok := offboard.JoinGuardsParts(g.parts[k])
		if !ok {
			return false
		}
		delete(g.parts, k)
		r = whole
	}
	if g.replies[r.Tenant] == nil {
		g.replies[r.Tenant] = map[string]offboard.GuardsReply{}
	}
	if _, again := g.replies[r.Tenant][r.Replica]; again {
		return false
	}
	g.replies[r.Tenant][r.Replica] = r
	_, ok := g.serving[r.Tenant][r.Replica]
	return ok
}

// compareGuards groups the replicas serving tenant by the guards they
// hold: by digest, the worker's own comparison. A replica that did not
// answer counts in the comparison by the digest it announced, if any.
func compareGuards(tenant string, serving map[string]string, replies map[string]offboard.GuardsReply) *tenantGuards {
	tg := &tenantGuards{Tenant: tenant}
	ids := slices.Sorted(maps.Keys(serving))
	for id := range replies {
		if _, ok := serving[id]; !ok {
			ids = append(ids, id) // started since the bucket was read
		}
	}
	slices.Sort(ids)
	tg.Replicas = ids
	byDigest := map[string]*guardsHeld{}
	digests := map[string]bool{}
	for _, id := range ids {
		r, ok := replies[id]
		if !ok {
			tg.NotAnswered = append(tg.NotAnswered, id)
			if d := serving[id]; d != "" {
				digests[d] = true
			}
			continue
		}
		digests[r.Digest] = true
		g := byDigest[r.Digest]
		if g == nil {
			g = &guardsHeld{Digest: r.Digest, Protect: r.Protect, RequireInactiveFor: r.RequireInactiveFor, Budget: r.Budget}
			byDigest[r.Digest] = g
			tg.Guards = append(tg.Guards, *g)
		}
		g.Replicas = append(g.Replicas, id)
	}
	for i := range tg.Guards {
		tg.Guards[i].Replicas = byDigest[tg.Guards[i].Digest].Replicas
	}
	tg.Differ = differing(tg.Guards)
	tg.differ = len(digests) > 1
	tg.Agree = !tg.differ && len(tg.NotAnswered) == 0
	if tg.differ {
		tg.DifferNotAnswered = differNotAnswered(tg.NotAnswered, serving, byDigest)
	}
	return tg
}

// differNotAnswered groups by digest the replicas of notAnswered that
// announced guards no replica that answered holds (byDigest).
func differNotAnswered(notAnswered []string, serving map[string]string, byDigest map[string]*guardsHeld) []guardsAnnounced {
	silent := map[string][]string{}
	for _, id := range notAnswered {
		if d := serving[id]; d != "" && byDigest[d] == nil {
			silent[d] = append(silent[d], id)
		}
	}
	var out []guardsAnnounced
	for _, d := range slices.Sorted(maps.Keys(silent)) {
		out = append(out, guardsAnnounced{Replicas: silent[d], Digest: d})
	}
	return out
}

// guardsFields are a set of guards' fields as guards names and shows
// them.
var guardsFields = []struct {
	name string
	list func(*guardsHeld) []string
	// same is a list entry as the worker compares it (two entries
	// written apart that protect the same devices are one).
	same func(string) string
	one  func(*guardsHeld) string
}{
	{name: "protect.machineIds", list: func(g *guardsHeld) []string { return g.Protect.MachineIDs }, same: strings.ToLower},
	{name: "protect.computerDnsNames", list: func(g *guardsHeld) []string { return g.Protect.ComputerDNSNames }, same: config.SameGlob},
	{name: "protect.machineTags", list: func(g *guardsHeld) []string { return g.Protect.MachineTags }, same: config.Folded},
	{name: "protect.rbacGroups", list: func(g *guardsHeld) []string { return g.Protect.RbacGroups }, same: config.Folded},
	{name: "requireInactiveFor", one: func(g *guardsHeld) string { return g.RequireInactiveFor }},
	{name: "budget", one: func(g *guardsHeld) string { return g.Budget }},
}

// differing names the fields whose values are not the same in every
// set of guards (lists compared as sets, their entries as the worker
// compares them).
func differing(sets []guardsHeld) []string {
	var names []string
	for _, f := range guardsFields {
		key := func(g *guardsHeld) string {
			if f.one != nil {
				return f.one(g)
			}
			l := sameEntries(f.list(g), f.same)
			slices.Sort(l)
			return strings.Join(slices.Compact(l), "\x00")
		}
		for i := 1; i < len(sets); i++ {
			if key(&sets[i]) != key(&sets[0]) {
				names = append(names, f.name)
				break
			}
		}
	}
	return names
}

// overrideOf is the tenant's budget override as the worker reads it; nil:
// none.
func overrideOf(tenant string, view *control.View, h budgetHorizon) *guardsOverride {
	if _, ok := view.Budget(tenant); !ok {
		return nil
	}
	_, st := budgetInForce(tenant, nil, view, h)
	return &guardsOverride{Budget: st.Override, By: st.By, Reason: st.Reason, Ignored: st.Ignored}
}

// guardsVerdict is guards' failure: a tenant whose replicas disagree, or
// one a replica did not answer for; nil when every tenant's agree.
func guardsVerdict(tenants []*tenantGuards) error {
	var differ, unanswered []string
	for _, tg := range tenants {
		switch {
		case tg.differ:
			differ = append(differ, tg.Tenant)
		case !tg.Agree:
			unanswered = append(unanswered, tg.Tenant)
		}
	}
	var errs []string
	if len(differ) > 0 {
		errs = append(errs, "the replicas serving "+strings.Join(differ, ", ")+" hold other guards")
	}
	if len(unanswered) > 0 {
		errs = append(errs, "a replica serving "+strings.Join(unanswered, ", ")+" did not answer within "+guardsWait.String())
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// printGuards writes the guards as a table: first, for every tenant whose
// replicas disagree, a line that says so and the differences; then each
// tenant's guards, each set with the replicas that hold it.
func printGuards(w io.Writer, tenants []*tenantGuards) {
	said := false // a line before the tenants' blocks, which a blank one follows
	for _, tg := range tenants {
		said = said || tg.differ || len(tg.NotAnswered) > 0
		if tg.differ {
			fmt.Fprintf(w, "GUARDS DIFFER for tenant %s: %s\n", tg.Tenant, heldBy(tg.Guards, tg.DifferNotAnswered))
			for _, d := range differences(tg.Guards) {
				fmt.Fprintf(w, "  %s\n", d)
			}
		}
		if len(tg.NotAnswered) > 0 {
			fmt.Fprintf(w, "NOT ANSWERED for tenant %s: replica %s did not answer within %v; its guards are not known\n",
				tg.Tenant, strings.Join(tg.NotAnswered, ", "), guardsWait)
		}
	}
	for i, tg := range tenants {
		if i > 0 || said {
			fmt.Fprintln(w)
		}
		state := "agree"
		switch {
		case tg.differ:
			state = "DISAGREE"
		case !tg.Agree:
			state = "NOT ALL ANSWERED"
		}
		fmt.Fprintf(w, "TENANT %s  replicas %s (%s)\n", tg.Tenant, strings.Join(tg.Replicas, ", "), state)
		for i := range tg.Guards {
			g := &tg.Guards[i]
			indent := "  "
			if len(tg.Guards) > 1 {
				fmt.Fprintf(w, "  held by replica %s:\n", strings.Join(g.Replicas, ", "))
				indent = "    "
			}
			for _, f := range guardsFields {
				fmt.Fprintf(w, "%s%-26s %s\n", indent, f.name, shownField(g, f.list, f.one))
			}
		}
		o := "none"
		if b := tg.BudgetOverride; b != nil {
			o = fmt.Sprintf("%s, by %s: %s", b.Budget, orNone(printable(b.By)), orNone(printable(b.Reason)))
			if b.Ignored != "" {
				o += " (ignored by the worker: " + b.Ignored + ")"
			}
		}
		fmt.Fprintf(w, "  %-26s %s\n", "budget override", o)
	}
}

// shownField is a field's value as the table shows it: a list's count and
// its first guardsShown entries.
func shownField(g *guardsHeld, list func(*guardsHeld) []string, one func(*guardsHeld) string) string {
	if one != nil {
		return noneIf(one(g))
	}
	l := list(g)
	s := fmt.Sprintf("%d", len(l))
	if len(l) > 0 {
		s += "  " + shortList(l)
	}
	return s
}

// shortList is the first guardsShown entries of l, quoted, and how many
// more there are.
func shortList(l []string) string {
	shown := make([]string, 0, min(len(l), guardsShown))
	for _, e := range l[:min(len(l), guardsShown)] {
		shown = append(shown, fmt.Sprintf("%q", e))
	}
	s := strings.Join(shown, ", ")
	if more := len(l) - guardsShown; more > 0 {
		s += fmt.Sprintf(", ... %d more (--json shows them all)", more)
	}
	return s
}

// heldBy says which replicas hold which set of guards: those that
// answered, then those that did not and announced other guards
// (silentOther, by digest).
func heldBy(sets []guardsHeld, silentOther []guardsAnnounced) string {
	parts := make([]string, 0, len(sets)+len(silentOther))
	for _, g := range sets {
		parts = append(parts, "replica "+strings.Join(g.Replicas, ", "))
	}
	for _, a := range silentOther {
		parts = append(parts, "replica "+strings.Join(a.Replicas, ", ")+" (not answered: by the digest it announced)")
	}
	return strings.Join(parts, " and ") + " hold other guards; a request is judged by the guards of the replica that takes it"
}

// differences describes, field by field, what differs between the sets
// of guards: for a list, the entries each set has that another lacks;
// for a value, each set's.
func differences(sets []guardsHeld) []string {
	var lines []string
	differ := differing(sets)
	for _, f := range guardsFields {
		if !slices.Contains(differ, f.name) {
			continue
		}
		var parts []string
		// Each set's entries as the worker compares them, looked up once
		// per entry: a tier-0 list holds 50,000.
		held := make([]map[string]bool, len(sets))
		for i := range sets {
			if f.one == nil {
				held[i] = map[string]bool{}
				for _, e := range f.list(&sets[i]) {
					held[i][f.same(e)] = true
				}
			}
		}
		for i := range sets {
			g := &sets[i]
			who := "replica " + strings.Join(g.Replicas, ", ")
			if f.one != nil {
				parts = append(parts, fmt.Sprintf("%s: %s", who, noneIf(f.one(g))))
				continue
			}
			var only []string
			for _, e := range f.list(g) {
				k := f.same(e)
				if slices.ContainsFunc(held, func(o map[string]bool) bool { return !o[k] }) {
					only = append(only, e)
				}
			}
			parts = append(parts, fmt.Sprintf("%s: %d, %s", who, len(f.list(g)), orNothing(only)))
		}
		lines = append(lines, fmt.Sprintf("%-26s %s", f.name, strings.Join(parts, "; ")))
	}
	return lines
}

// sameEntries is a list's entries as the worker compares them.
func sameEntries(list []string, same func(string) string) []string {
	l := make([]string, len(list))
	for i, e := range list {
		l[i] = same(e)
	}
	return l
}

// orNothing is the entries only one set holds, joined, or says there
// are none.
func orNothing(only []string) string {
	if len(only) == 0 {
		return "none of its own"
	}
	return "of its own " + shortList(only)
}

// noneIf is s, or "none" for a guard not set; a duration as an operator
// writes it (shortDuration).
func noneIf(s string) string {
	if s == "" {
		return "none"
	}
	if d, err := time.ParseDuration(s); err == nil {
		return shortDuration(d)
	}
	return s
}

// shortDuration is d as offboard.ShortDuration writes it, and in days
// when it is whole days: 720h0m0s is 30d (720h), 1h30m0s is 1h30m.
func shortDuration(d time.Duration) string {
	h := offboard.ShortDuration(d)
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return fmt.Sprintf("%dd (%s)", d/day, h)
	}
	return h
}
