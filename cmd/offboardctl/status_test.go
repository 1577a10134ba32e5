package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// seedQuotaJournals sets up the tenants' consumers and writes each
// tenant's quota journal as a tenant calling at its quota does over the
// last hour: two calls entered and the two before them ended in each
// entry, the tenants' entries interleaved as replicas write them. Tenant i
// makes calls-2*(i%5) calls (callsOf), so that one tenant's figures shown
// for another show.
func seedQuotaJournals(tb testing.TB, js jetstream.JetStream, tenants, calls int) []string {
	tb.Helper()
	names := make([]string, tenants)
	for i := range names {
		names[i] = fmt.Sprintf("tenant-%04d", i)
	}
	if _, err := queue.Ensure(tb.Context(), js, queue.Settings{Tenants: names}); err != nil {
		tb.Fatal(err)
	}
	entries := calls / 2
	start := time.Now().Add(-58 * time.Minute)
	step := 58 * time.Minute / time.Duration(max(entries, 1))
	for k := range entries {
		at := start.Add(time.Duration(k) * step).UnixNano()
		for i, name := range names {
			skip := i % 5
			if k < skip {
				continue
			}
			ev := limiter.Event{Writer: "w1", Reserved: []limiter.Call{
				{API: mde.APIOffboard, ID: uint64(2*k + 1), At: at + int64(45*time.Second)},
				{API: mde.APIOffboard, ID: uint64(2*k + 2), At: at + int64(45*time.Second)},
			}}
			if k > skip {
				ev.Done = []limiter.Call{{API: mde.APIOffboard, ID: uint64(2*k - 1), At: at}, {API: mde.APIOffboard, ID: uint64(2 * k), At: at}}
			}
			data, _ := json.Marshal(ev)
			if _, err := js.PublishAsync(offboard.Subjects{}.Quota(name), data); err != nil {
				tb.Fatal(err)
			}
		}
		waitPublished(tb, js)
	}
	return names
}

// callsOf is how many calls seedQuotaJournals enters for tenant i.
func callsOf(i, calls int) int { return calls/2*2 - 2*(i%5) }

func waitPublished(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("publish")
	}
}

// checkQuotaUsed checks that status shows each tenant in order with the
// calls seedQuotaJournals entered for it in the hour.
func checkQuotaUsed(tb testing.TB, sts []tenantStatus, names []string, calls int) {
	tb.Helper()
	got := make([]string, len(sts))
	for i, st := range sts {
		got[i] = st.Tenant
	}
	if !slices.Equal(got, names) {
		tb.Fatalf("status shows tenants %v, want %v", got, names)
	}
	for i, st := range sts {
		if len(st.Quota) != 2 || st.Quota[1].Used != min(callsOf(i, calls), st.Quota[1].Limit) {
			tb.Errorf("%s: quota %+v, want %d calls used in the hour", st.Tenant, st.Quota, callsOf(i, calls))
		}
	}
}

// TestStatusOfTenantsAtTheirQuota: status of 400 tenants, each of which
// made 150 offboard calls in the last hour, shows each one's calls, and
// reads the quota journal once for all of them. Each tenant's quota
// journal was read on its own subject: the server passed over every
// tenant's entries for each one, and made a consumer anew for every 512
// entries read (800 readers here); status ran past its limit (four times
// --connect-timeout, 2 s then) at tenant 170 or so, and 1000 tenants at
// their full quota (1500 calls an hour) took 88 s
// (BenchmarkStatusAtFullQuota). The readers are counted, not the time,
// which moves with the machine's load.
func TestStatusOfTenantsAtTheirQuota(t *testing.T) {
	t.Parallel()
	const tenants, calls = 400, 150
	nc, js := natstest.Connect(t)
	names := seedQuotaJournals(t, js, tenants, calls)
	// The readers status makes on the quota journal: the work, where the
	// time it takes moves with the machine's load.
	var readers atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.CREATE."+offboard.StreamQuota+".>", func(*nats.Msg) { readers.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errs := ctl(t, nc.ConnectedUrl(), "--connect-timeout", "10s", "status", "--json")
	took := time.Since(start)
	var sts []tenantStatus
	if code != exitOK || json.Unmarshal([]byte(out), &sts) != nil {
		t.Fatalf("status of %d tenants: exit %d after %v, stderr %q", tenants, code, took, errs)
	}
	t.Logf("status of %d tenants with %d calls each: %v, %d readers of the quota journal", tenants, calls, took, readers.Load())
	checkQuotaUsed(t, sts, names, calls)
	if n := readers.Load(); n == 0 || n > 20 {
		t.Errorf("status made %d readers of the quota journal for %d tenants, want a few for all of them", n, tenants)
	}
}

// TestStatusOfEveryTenantAsOfEach: status of every tenant, which reads
// the journals once for all and several tenants at a time, shows each
// tenant in order as status of that tenant alone shows it: its calls, a
// 429's pause, its budget's slots (the tenants file's or an override),
// limits of its own, its backlog and oldest request, a pause.
func TestStatusOfEveryTenantAsOfEach(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	names := seedQuotaJournals(t, js, 24, 40)
	s := queue.Settings{Tenants: names, Limits: map[string]string{}, Budgets: map[string]string{}}
	for i, name := range names {
		switch i % 4 {
		case 1:
			s.Limits[name] = "10/1m0s,30/1h0m0s"
		case 2:
			s.Budgets[name] = fmt.Sprintf("%d/24h0m0s", 5+i)
		}
		now := time.Now()
		var ev limiter.Event
		if i%3 == 0 {
			ev = limiter.Event{Writer: "w2", Paused: now.Add(time.Duration(i) * time.Minute).UnixNano()}
		} else {
			ev = limiter.Event{Writer: "w2", Reserved: []limiter.Call{{API: mde.APIMachines, ID: 1, At: now.Add(time.Minute).UnixNano()}}}
		}
		publishEvent(t, js, offboard.Subjects{}.Quota(name), ev)
		for k := range i % 5 {
			publishEvent(t, js, offboard.Subjects{}.Budget(name), limiter.Event{Writer: "w2", Reserved: []limiter.Call{
				{API: budgetAPI, ID: uint64(k + 1), At: now.Add(time.Duration(k-3) * time.Hour).UnixNano()}}})
		}
		for range i % 3 {
			publishEvent(t, js, offboard.Subjects{}.Request(name, offboard.Normal), limiter.Event{})
		}
		publishEvent(t, js, offboard.Subjects{}.Request(name, offboard.Bulk), limiter.Event{})
	}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	url := nc.ConnectedUrl()
	for _, args := range [][]string{{"pause", names[5], "--reason", "r"}, {"budget", names[7], "3/1h", "--reason", "r"}, {"budget", names[10], "1/1h", "--reason", "r"}} {
		if code, _, errs := ctl(t, url, args...); code != exitOK {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
	c := &cli{js: js, timeout: 10 * time.Second, subjects: offboard.Subjects{}}
	now := time.Now()
	all, err := c.status(t.Context(), "", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(names) {
		t.Fatalf("status of every tenant shows %d tenants, want %d", len(all), len(names))
	}
	for i, name := range names {
		one, err := c.status(t.Context(), name, now)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(all[i])
		want, _ := json.Marshal(one[0])
		if string(got) != string(want) {
			t.Errorf("status of every tenant, row %d:\n%s\nstatus of %s:\n%s", i, got, name, want)
		}
	}
}

func publishEvent(t *testing.T, js jetstream.JetStream, subject string, ev limiter.Event) {
	t.Helper()
	data, _ := json.Marshal(ev)
	if _, err := js.Publish(t.Context(), subject, data); err != nil {
		t.Fatal(err)
	}
}
