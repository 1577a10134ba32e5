package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The stale devices of the campaign part: seen last 100 to 180 days ago.
// The first two are listed in contoso's guards (protect.machineIds).
const staleDevices = 9

func staleMachine(i int) mdesim.Machine {
	return mdesim.Machine{
		ID: fmt.Sprintf("0e%038x", i+1), ComputerDNSName: fmt.Sprintf("old-%04d.contoso.local", i),
		OSPlatform: []string{"Windows10", "Windows11", "WindowsServer2019"}[i%3], HealthStatus: "Inactive",
		LastSeen: time.Now().Add(-time.Duration(100+10*i) * 24 * time.Hour), RbacGroupName: "Workstations", RbacGroupID: 11,
	}
}

// seenAgainRow is the plan's row whose device comes back before the run:
// a laptop taken out of storage, seen by Defender after the plan.
const seenAgainRow = 3

// campaignPart plans contoso's devices not seen for 60 days, as `offboardctl
// campaign plan` does, prints the plan's summary, has one planned device
// seen again, then publishes the plan's rows as `campaign run` does
// (request ids <name>-<row>, bulk subject, each row's lastSeen as its
// request's notSeenSince) and prints a short report: the device seen
// again is refused.
func campaignPart(ctx context.Context, out io.Writer, js jetstream.JetStream, e *env) error {
	const tenant, name = "contoso", "contoso-inactive-60d"
	fmt.Fprintf(out, "\nCampaign: offboardctl campaign plan --tenant %s --inactive-for 60d\n", tenant)
	rows, err := planRows(ctx, out, js, tenant)
	if err != nil {
		return err
	}
	if len(rows) >= seenAgainRow {
		back := rows[seenAgainRow-1]
		seenAgain(e, back[0])
		fmt.Fprintf(out, "\nMeanwhile %s (row %d) is seen again: Defender's lastSeen is now, no longer %s\n", back[1], seenAgainRow, back[2])
	}
	results, stop, err := follow(ctx, js, tenant, name)
	if err != nil {
		return err
	}
	defer stop()
	start := time.Now()
	if err := publishRows(ctx, js, tenant, name, rows); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nRunning it (offboardctl campaign run --tenant %s --csv %s.csv): %d requests on the bulk subject\n", tenant, name, len(rows))
	got, err := results.wait(ctx, len(rows), time.Minute)
	if err != nil {
		return err
	}
	report(out, name, rows, got, time.Since(start))
	return nil
}

// planRows plans the tenant's devices not seen for 60 days, prints the
// plan's summary and returns its CSV's rows, the header left out.
func planRows(ctx context.Context, out io.Writer, js jetstream.JetStream, tenant string) ([][]string, error) {
	reply, data, err := offboard.RequestPlan(ctx, js, offboard.Subjects{}, tenant, offboard.PlanRequest{InactiveFor: 60 * 24 * time.Hour}, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if reply.State != offboard.PlanDone {
		return nil, fmt.Errorf("plan: %s", reply.Error.Message)
	}
	reply.WriteSummary(out, "")
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, err
	}
	return rows[1:], nil
}

// publishRows publishes the plan's rows as campaign run does: request
// ids <name>-<row>, bulk subject, each row's lastSeen as notSeenSince.
func publishRows(ctx context.Context, js jetstream.JetStream, tenant, name string, rows [][]string) error {
	for n, row := range rows {
		premise, err := campaign.ParseLastSeen(row[2])
		if err != nil {
			return fmt.Errorf("plan row %d: %w", n+1, err)
		}
		req := offboard.Request{RequestID: fmt.Sprintf("%s-%06d", name, n+1), MachineID: row[0], RequestedBy: "demo", Source: "campaign:" + name,
			NotSeenSince: premise}
		if _, err := offboard.Publish(ctx, js, offboard.Subjects{}, tenant, offboard.Bulk, req); err != nil {
			return err
		}
	}
	return nil
}

// report prints each row's result and a line of counts.
func report(out io.Writer, name string, rows [][]string, got map[string]offboard.Result, took time.Duration) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROW\tREQUEST\tDEVICE\tOUTCOME\tACTION / ERROR")
	for n, row := range rows {
		r := got[fmt.Sprintf("%s-%06d", name, n+1)]
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", n+1, r.RequestID, row[1], r.Outcome, detail(r))
	}
	_ = w.Flush()
	refused := 0
	for _, r := range got {
		if r.Error != nil && r.Error.Rule == offboard.RuleNotSeenSince {
			refused++
		}
	}
	fmt.Fprintf(out, "report: %d rows, every one answered in %.1fs; %d refused, its device seen since the plan\n", len(rows), took.Seconds(), refused)
}

// seenAgain has Defender see the tenant's device id now.
func seenAgain(e *env, id string) {
	tenantID := e.tenants[0].tenantID
	for _, m := range e.sim.Machines(tenantID) {
		if strings.EqualFold(m.ID, id) {
			m.LastSeen, m.HealthStatus = time.Now(), "Active"
			e.sim.AddMachine(tenantID, m)
		}
	}
}

func detail(r offboard.Result) string {
	if r.Error != nil && r.Error.Rule != "" {
		return r.Error.Code + ", rule " + r.Error.Rule
	}
	if r.Error != nil {
		return r.Error.Code
	}
	var act struct{ ID, Status string }
	_ = json.Unmarshal(r.MachineAction, &act)
	return act.ID + " " + act.Status
}

// campaignResults collects the results of one campaign's requests.
type campaignResults struct {
	mu   sync.Mutex
	byID map[string]offboard.Result
}

func follow(ctx context.Context, js jetstream.JetStream, tenant, name string) (*campaignResults, func(), error) {
	c := &campaignResults{byID: map[string]offboard.Result{}}
	cons, err := js.OrderedConsumer(ctx, offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{offboard.Subjects{}.Result(tenant)},
	})
	if err != nil {
		return nil, nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r offboard.Result
		if json.Unmarshal(m.Data(), &r) == nil && strings.HasPrefix(r.RequestID, name+"-") {
			c.mu.Lock()
			c.byID[r.RequestID] = r
			c.mu.Unlock()
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return c, cc.Stop, nil
}

func (c *campaignResults) wait(ctx context.Context, n int, d time.Duration) (map[string]offboard.Result, error) {
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		got := len(c.byID)
		c.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d campaign results after %v", got, n, d)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d campaign results: %w", got, n, ctx.Err())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID, nil
}
