package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// resultTable prints results as they arrive and counts them by outcome.
type resultTable struct {
	start time.Time
	want  int
	done  chan struct{}

	mu       sync.Mutex
	w        *tabwriter.Writer
	outcomes map[string]int // "failed (code)" for failures
	seen     int
}

func newResultTable(out io.Writer, want int) *resultTable {
	t := &resultTable{start: time.Now(), want: want, done: make(chan struct{}), w: tabwriter.NewWriter(out, 0, 0, 2, ' ', 0), outcomes: map[string]int{}}
	fmt.Fprintln(t.w, "TIME\tTENANT\tREQUEST\tOUTCOME\tDEVICE\tACTION / ERROR")
	_ = t.w.Flush()
	return t
}

// follow prints every tenant's results from the start of the results
// stream until the returned ConsumeContext is stopped.
func (t *resultTable) follow(ctx context.Context, js jetstream.JetStream) (jetstream.ConsumeContext, error) {
	cons, err := js.OrderedConsumer(ctx, offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{offboard.Subjects{}.Result(">")}, // every tenant's
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
	case r.Error != nil:
		detail = r.Error.Code + ": " + short(r.Error.Message, 70)
	case len(r.MachineAction) > 0:
		var act struct{ ID, Status string }
		_ = json.Unmarshal(r.MachineAction, &act)
		detail = act.ID + " " + act.Status
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%5.1fs\t%s\t%s\t%s\t%s\t%s\n", time.Since(t.start).Seconds(), r.Tenant, orDash(r.RequestID), r.Outcome, short(orDash(r.MachineID), 12), detail)
	_ = t.w.Flush()
	key := r.Outcome
	if r.Error != nil {
		key += " (" + r.Error.Code + ")"
	}
	t.outcomes[key]++
	t.seen++
	if t.seen == t.want {
		close(t.done)
	}
}

// wait waits for every result, for at most d.
func (t *resultTable) wait(ctx context.Context, d time.Duration) error {
	select {
	case <-t.done:
		return nil
	case <-time.After(d):
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("only %d of %d results after %v", t.seen, t.want, d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// summary prints the counts by outcome, the calls the simulator saw and
// its busiest windows.
func (t *resultTable) summary(e *env) {
	fmt.Printf("\nSummary after %.1fs\n", time.Since(t.start).Seconds())
	t.mu.Lock()
	for _, k := range slices.Sorted(maps.Keys(t.outcomes)) {
		fmt.Printf("  %-36s %d\n", k, t.outcomes[k])
	}
	t.mu.Unlock()
	calls := map[string]int{}
	for _, c := range e.sim.Calls() {
		calls[c.API]++
	}
	fmt.Printf("  API calls seen by the simulator      offboard %d, machines %d, machineactions %d\n",
		calls["offboard"], calls["machines"], calls["machineactions"])
	for _, tn := range e.tenants {
		fmt.Printf("  %-8s busiest windows               ", tn.name)
		for _, win := range demoWindows {
			fmt.Printf("%d/%d in %v  ", e.sim.MaxInWindow(tn.tenantID, "offboard", win), win.Count, win.Length)
		}
		fmt.Printf("429s for full windows: %d\n", e.sim.ThrottledCount(tn.tenantID, "offboard"))
	}
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
