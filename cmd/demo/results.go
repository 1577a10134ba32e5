package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// deviceWidth is how much of a machine id the tables show: the demo's ids
// differ only in their last characters.
const deviceWidth = 12

// resultTable prints results as they arrive, in columns as wide as the
// tenants and request ids it was made for, and counts them by outcome.
type resultTable struct {
	out   io.Writer
	start time.Time
	row   string // the format of a row

	mu       sync.Mutex
	outcomes map[string]int // "failed (code)" for failures
	seen     int
}

// newResultTable prints the header of a table for the results of msgs.
func newResultTable(out io.Writer, msgs []pub) *resultTable {
	tw, rw := len("TENANT"), len("REQUEST")
	for _, p := range msgs {
		tw = max(tw, len(p.tenant))
		rw = max(rw, len(p.requestID()))
	}
	t := &resultTable{
		out: out, start: time.Now(), outcomes: map[string]int{},
		row: fmt.Sprintf("%%-6s  %%-%ds  %%-%ds  %%-15s  %%-%ds  %%s\n", tw, rw, deviceWidth+1),
	}
	fmt.Fprintf(out, t.row, "TIME", "TENANT", "REQUEST", "OUTCOME", "DEVICE", "ACTION / ERROR")
	return t
}

// follow prints the results published on subject (every tenant's:
// offboard.Subjects{}.Result(">")) from the policy's start until the
// returned ConsumeContext is stopped.
func (t *resultTable) follow(ctx context.Context, js jetstream.JetStream, subject string, from jetstream.DeliverPolicy) (jetstream.ConsumeContext, error) {
	cons, err := js.OrderedConsumer(ctx, offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: from,
	})
	if err != nil {
		return nil, err
	}
	return cons.Consume(func(m jetstream.Msg) {
		var r offboard.Result
		if json.Unmarshal(m.Data(), &r) == nil {
			t.add(r)
		}
	})
}

func (t *resultTable) add(r offboard.Result) {
	detail := ""
	switch {
	case r.Error != nil && r.Error.Rule != "":
		detail = r.Error.Code + ", rule " + r.Error.Rule + ": " + strings.TrimPrefix(r.Error.Message, "blocked by "+r.Error.Rule+": ")
	case r.Error != nil:
		detail = r.Error.Code + ": " + short(r.Error.Message, 70)
	case len(r.MachineAction) > 0:
		var act struct{ ID, Status string }
		_ = json.Unmarshal(r.MachineAction, &act)
		detail = act.ID + " " + act.Status
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.out, t.row, fmt.Sprintf("%5.1fs", time.Since(t.start).Seconds()), r.Tenant, orDash(r.RequestID), r.Outcome, device(r.MachineID), orDash(detail))
	if r.Error != nil {
		// ambiguous_machine: the devices sharing the name, one line each
		// under the row, so the operator sees which machineId to give.
		for _, c := range r.Error.Candidates {
			fmt.Fprintf(t.out, t.row, "", "", "", "", device(c.MachineID), "candidate, lastSeen "+orDash(c.LastSeen)+", healthStatus "+orDash(c.HealthStatus))
		}
	}
	key := r.Outcome
	if r.Error != nil {
		key += " (" + r.Error.Code + ")"
	}
	t.outcomes[key]++
	t.seen++
}

// note prints a line between the rows, after the time since the start.
func (t *resultTable) note(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.out, "%6s  "+format+"\n", append([]any{fmt.Sprintf("%5.1fs", time.Since(t.start).Seconds())}, args...)...)
}

// answered is the number of results printed.
func (t *resultTable) answered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

// wait waits until n results are printed, for at most d.
func (t *resultTable) wait(ctx context.Context, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for t.answered() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d results after %v", t.answered(), n, d)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// summary prints the counts by outcome, the calls the simulator saw and
// the busiest windows of the sample's tenants.
func (t *resultTable) summary(e *env) {
	fmt.Fprintf(t.out, "\nSummary of the sample batch after %.1fs\n", time.Since(t.start).Seconds())
	t.mu.Lock()
	for _, k := range slices.Sorted(maps.Keys(t.outcomes)) {
		fmt.Fprintf(t.out, "  %-36s %d\n", k, t.outcomes[k])
	}
	t.mu.Unlock()
	calls := map[string]int{}
	for _, c := range e.sim.Calls() {
		calls[c.API]++
	}
	fmt.Fprintf(t.out, "  API calls seen by the simulator      offboard %d, machines %d, machineactions %d\n",
		calls["offboard"], calls["machines"], calls["machineactions"])
	for _, tn := range e.tenants {
		fmt.Fprintf(t.out, "  %-8s busiest windows               ", tn.name)
		for _, win := range demoWindows {
			fmt.Fprintf(t.out, "%d/%d in %v  ", e.sim.MaxInWindow(tn.tenantID, "offboard", win), win.Count, win.Length)
		}
		fmt.Fprintf(t.out, "429s for full windows: %d\n", e.sim.ThrottledCount(tn.tenantID, "offboard"))
	}
}

// device is the end of a machine id, where the demo's ids differ.
func device(id string) string {
	if len(id) <= deviceWidth {
		return orDash(id)
	}
	return "…" + id[len(id)-deviceWidth:]
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// requestID is the request id the message carries, "" when it has none.
func (p pub) requestID() string {
	if p.raw == nil {
		return p.req.RequestID
	}
	var r struct{ RequestID string }
	_ = json.Unmarshal(p.raw, &r)
	return strings.TrimSpace(r.RequestID)
}
