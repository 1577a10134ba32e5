package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The guarded tenant's budget, and what the budget part raises it to.
const (
	demoBudget   = "3/1h"
	raisedBudget = "10/1h"
)

// guardedTenant is the tenant of the guard, budget and pause parts. Its
// guards protect domain controllers and a tag, and want 30 days of
// inactivity; its devices: dc-01 and a tagged one (both quiet for 45
// days), one seen two hours ago, then ten quiet for 45 days.
func guardedTenant() *demoTenant {
	t := &demoTenant{name: "woodgrove", tenantID: "12121212-3434-5656-7878-909090909090", clientID: "abababab-cdcd-efef-0101-232323232323",
		guards: "      protect:\n        computerDnsNames: [\"dc-*.woodgrove.local\"]\n        machineTags: [\"DoNotOffboard\"]\n" +
			"      requireInactiveFor: 30d\n      budget: \"" + demoBudget + "\"\n"}
	for i := range 13 {
		m := mdesim.Machine{
			ID: fmt.Sprintf("03%038x", i+1), ComputerDNSName: fmt.Sprintf("pc-%04d.woodgrove.local", i),
			OSPlatform: "Windows11", HealthStatus: "Inactive", LastSeen: time.Now().Add(-45 * 24 * time.Hour),
		}
		switch i {
		case 0:
			m.ComputerDNSName = "dc-01.woodgrove.local"
		case 1:
			m.MachineTags = []string{"DoNotOffboard"}
		case 2:
			m.HealthStatus, m.LastSeen = "Active", time.Now().Add(-2*time.Hour)
		}
		t.machines = append(t.machines, m)
	}
	return t
}

// requests are the guarded tenant's requests for its devices from .. to-1.
func (t *demoTenant) requests(prio offboard.Priority, from, to int) []pub {
	var ps []pub
	for i := from; i < to; i++ {
		ps = append(ps, pub{tenant: t.name, prio: prio, req: cmdbRequest(fmt.Sprintf("%s-%s-%04d", t.name, prio, i), t.machines[i].ID, "")})
	}
	return ps
}

// part is one labelled part of the demo: requests of one tenant and a
// table of their results.
type part struct {
	out   io.Writer
	js    jetstream.JetStream
	e     *env
	table *resultTable
	stop  func()
}

// startPart prints the part's heading and the header of its table, and
// follows the tenant's results from now on.
func startPart(ctx context.Context, out io.Writer, js jetstream.JetStream, e *env, heading string, ps []pub) (*part, error) {
	fmt.Fprintf(out, "\n%s\n", heading)
	p := &part{out: out, js: js, e: e, table: newResultTable(out, ps)}
	cc, err := p.table.follow(ctx, js, offboard.Subjects{}.Result(ps[0].tenant), jetstream.DeliverNewPolicy)
	if err != nil {
		return nil, err
	}
	p.stop = cc.Stop
	return p, nil
}

// guardsPart shows each guard rule refusing its device.
func guardsPart(ctx context.Context, out io.Writer, js jetstream.JetStream, e *env) error {
	t := e.guarded
	ps := t.requests(offboard.Normal, 0, 3)
	p, err := startPart(ctx, out, js, e, "Guards: "+t.name+" protects dc-*.woodgrove.local and the tag DoNotOffboard, and requires 30d of inactivity;"+
		" one request per rule", ps)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := (sampleBatch{msgs: ps}).publish(ctx, js); err != nil {
		return err
	}
	return p.table.wait(ctx, len(ps), 10*time.Second)
}

// budgetPart publishes more requests than the guarded tenant's budget
// allows, shows the extra ones held, then raises the budget as
// `offboardctl budget` does and shows them go.
func budgetPart(ctx context.Context, out io.Writer, js jetstream.JetStream, e *env) error {
	t := e.guarded
	ps := t.requests(offboard.Normal, 3, 8)
	p, err := startPart(ctx, out, js, e, fmt.Sprintf("Budget: %s's guards.budget is %q; %d requests for devices that pass the guards",
		t.name, demoBudget, len(ps)), ps)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := (sampleBatch{msgs: ps}).publish(ctx, js); err != nil {
		return err
	}
	if err := p.table.wait(ctx, 3, 10*time.Second); err != nil {
		return err
	}
	held := p.heldFor(ctx, "budget", len(ps)-3)
	p.table.note("budget spent: %d of %d wait, no result for %.1fs; %s %v, mde_offboard_budget_remaining{tenant=%q} %v",
		len(ps)-p.table.answered(), len(ps), held.Seconds(), heldName(t.name, "budget"), p.gauge("mde_offboard_held_requests", "tenant", t.name, "reason", "budget"),
		t.name, p.gauge("mde_offboard_budget_remaining", "tenant", t.name))
	if err := p.apply(ctx, control.Change{Tenant: t.name, Action: control.ActionBudget, Value: raisedBudget, By: "demo", Reason: "let the held requests go"},
		fmt.Sprintf("offboardctl budget %s %s --reason %q", t.name, raisedBudget, "let the held requests go")); err != nil {
		return err
	}
	return p.table.wait(ctx, len(ps), 10*time.Second)
}

// pausePart pauses the guarded tenant's bulk priority as `offboardctl
// pause` does, publishes bulk requests, shows them held, then resumes.
func pausePart(ctx context.Context, out io.Writer, js jetstream.JetStream, e *env) error {
	t := e.guarded
	ps := t.requests(offboard.Bulk, 8, 11)
	p, err := startPart(ctx, out, js, e, fmt.Sprintf("Pause: %s's bulk priority paused, %d bulk requests published, then resumed", t.name, len(ps)), ps)
	if err != nil {
		return err
	}
	defer p.stop()
	pause := control.Change{Tenant: t.name, Action: control.ActionPause, Priority: string(offboard.Bulk), By: "demo", Reason: "campaign on hold"}
	if err := p.apply(ctx, pause, fmt.Sprintf("offboardctl pause %s --priority bulk --reason %q", t.name, pause.Reason)); err != nil {
		return err
	}
	p.waitGauge(ctx, 1, 3*time.Second, "mde_offboard_tenant_paused", "tenant", t.name, "priority", "bulk")
	if err := (sampleBatch{msgs: ps}).publish(ctx, js); err != nil {
		return err
	}
	held := p.heldFor(ctx, "pause", len(ps))
	p.table.note("paused: %d of %d answered in %.1fs; %s %v", p.table.answered(), len(ps), held.Seconds(),
		heldName(t.name, "pause"), p.gauge("mde_offboard_held_requests", "tenant", t.name, "reason", "pause"))
	pause.Action = control.ActionResume
	if err := p.apply(ctx, pause, fmt.Sprintf("offboardctl resume %s --priority bulk", t.name)); err != nil {
		return err
	}
	return p.table.wait(ctx, len(ps), 10*time.Second)
}

// heldFor waits a second, and longer (up to three) until the worker's
// gauge counts n requests held for reason; it returns how long it waited.
func (p *part) heldFor(ctx context.Context, reason string, n int) time.Duration {
	start := time.Now()
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	p.waitGauge(ctx, float64(n), 2*time.Second, "mde_offboard_held_requests", "tenant", p.e.guarded.name, "reason", reason)
	return time.Since(start)
}

func heldName(tenant, reason string) string {
	return fmt.Sprintf("mde_offboard_held_requests{tenant=%q,reason=%q}", tenant, reason)
}

// apply makes a change through the control store, as offboardctl does,
// and prints the command it stands for.
func (p *part) apply(ctx context.Context, ch control.Change, command string) error {
	store, err := control.Open(ctx, p.js, offboard.Subjects{})
	if err != nil {
		return err
	}
	if _, err := store.Apply(ctx, ch); err != nil {
		return err
	}
	p.table.note("%s", command)
	return nil
}

// waitGauge waits until the gauge is want, for at most d.
func (p *part) waitGauge(ctx context.Context, want float64, d time.Duration, name string, labels ...string) {
	deadline := time.Now().Add(d)
	for p.gauge(name, labels...) != want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// gauge reads a gauge of the worker's registry; labels are name, value
// pairs. NaN when there is no such series.
func (p *part) gauge(name string, labels ...string) float64 {
	mfs, err := p.e.reg.Gather()
	if err != nil {
		return math.NaN()
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				match = match && got[labels[i]] == labels[i+1]
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
	}
	return math.NaN()
}
