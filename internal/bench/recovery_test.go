package bench

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// recoveryCase is a drain of two tenants' backlogs during which NATS goes
// away and comes back.
type recoveryCase struct {
	nodes int
	// outages run once the simulator has seen the given share of the
	// calls; stream names the stream whose leader is bounced (a cluster),
	// "" the lone server.
	outages []recoveryOutage
}

type recoveryOutage struct {
	at     float64
	stream string
}

const recoveryAckWait = 10 * time.Second

// BenchmarkRecovery drains two tenants' backlogs (600 requests each, 6
// compressed minutes of quota) while NATS goes away: a lone server shut
// down and restarted on its store halfway; on a three-node cluster with
// streams of three replicas, the quota journal's leader shut down and
// restarted a quarter of the way, the request stream's leader halfway. It
// prints, for each outage, the time from NATS being back to the last
// result, beside the time the work left takes at full pace.
func BenchmarkRecovery(b *testing.B) {
	cases := map[string]recoveryCase{
		"restart": {nodes: 1, outages: []recoveryOutage{{at: 0.5}}},
		"cluster": {nodes: 3, outages: []recoveryOutage{
			{at: 0.25, stream: "MDE_OFFBOARD_QUOTA"}, {at: 0.5, stream: "MDE_OFFBOARD_REQUESTS"},
		}},
	}
	for _, name := range []string{"restart", "cluster"} {
		b.Run(name, func(b *testing.B) { runRecovery(b, cases[name]) }) // once, whatever b.N
	}
}

func runRecovery(b *testing.B, c recoveryCase) {
	factor := timeScale(b)
	const n = 600
	windows := scaled(documented(), factor)
	h := newHarness(b, options{tenants: tenantNames("t", 2), machines: n, windows: windows, nodes: c.nodes})
	args := append([]string{"--ack-wait", recoveryAckWait.String(), "--stream-replicas", strconv.Itoa(c.nodes)},
		scaledArgs(b, factor, "quota-margin", "call-timeout")...)
	h.startWorker(args...)
	h.waitSetup(time.Minute)
	col := h.collect()
	reqs := requests(h.tenants, n, false)
	if _, err := h.publishAsync(reqs); err != nil {
		b.Fatal(err)
	}
	ideal := idealStarts(windows, n)
	done := func() int { return min(h.calls.of(h.tenants[0].id), h.calls.of(h.tenants[1].id), n-1) }
	// For each outage: when NATS was back, the work left then at full
	// pace, and, but for the last, how long the drain took from there to
	// the next outage against the work it did meanwhile at full pace (the
	// last result comes after every outage, so that figure alone tells
	// one outage's recovery from the next).
	var back []time.Time
	var left, between, betweenIdeal []time.Duration
	for i, o := range c.outages {
		for h.calls.of(h.tenants[0].id)+h.calls.of(h.tenants[1].id) < int(o.at*float64(len(reqs))) {
			time.Sleep(10 * time.Millisecond)
		}
		if i > 0 {
			between = append(between, time.Since(back[i-1]))
			betweenIdeal = append(betweenIdeal, ideal[done()]-ideal[n-1]+left[i-1])
		}
		h.outage(o.stream)
		back = append(back, time.Now())
		left = append(left, ideal[n-1]-ideal[done()])
	}
	got := h.waitFor(col, len(reqs), 5*time.Minute, func() {})
	time.Sleep(200 * time.Millisecond)
	var last time.Time
	dup := 0
	for _, t := range h.tenants {
		for i := range n {
			if r, ok := col.get(fmt.Sprintf("%s/r%07d", t.name, i)); ok {
				last = latest(last, r.stored)
				dup += r.copies - 1
			}
		}
	}
	calls := h.sim.Calls()
	for i, o := range c.outages {
		what := "server restarted"
		if o.stream != "" {
			what = "leader of " + o.stream + " bounced"
		}
		since := last.Sub(back[i])
		fmt.Printf("Recovery/%d-node: %s: last result %.2fs after NATS was back; work left at full pace %.2fs (ack wait %v)\n",
			c.nodes, what, since.Seconds(), left[i].Seconds(), recoveryAckWait)
		if i < len(between) {
			fmt.Printf("Recovery/%d-node: %s: the next outage %.2fs after NATS was back, for %.2fs of work at full pace\n",
				c.nodes, what, between[i].Seconds(), betweenIdeal[i].Seconds())
			b.ReportMetric(between[i].Seconds(), fmt.Sprintf("s-to-outage-%d", i+2))
		}
		b.ReportMetric(since.Seconds(), fmt.Sprintf("s-to-last-result-%d", i+1))
	}
	for _, t := range h.tenants {
		v := h.simView(t, calls, windows)
		fmt.Printf("Recovery/%d-node: %s: busiest windows %s, %d 429s, %d devices with two actions\n",
			c.nodes, t.name, v.windowsString(windows), v.throttled, v.dupActions)
	}
	fmt.Printf("Recovery/%d-node: %d/%d results, %d extra copies\n", c.nodes, got, len(reqs), dup)
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// outage shuts down and restarts the lone server, or the leader of stream.
func (h *harness) outage(stream string) {
	i := 0
	if stream != "" {
		i = h.cluster.StreamLeader(h.tb.Context(), h.js, stream)
	}
	h.progress("shutting down %s", h.cluster.Name(i))
	h.cluster.Shutdown(i)
	h.cluster.Restart(i)
}
