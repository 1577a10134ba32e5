package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

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
// made 150 offboard calls in the last hour, shows each one's calls within
// its limit (four times --connect-timeout). Each tenant's quota journal
// was read on its own subject: the server passed over every tenant's
// entries for each one, and made a consumer anew for every 512 entries
// read; here status ran past its limit at tenant 170 or so, and 1000
// tenants at their full quota (1500 calls an hour) took 88 s
// (BenchmarkStatusAtFullQuota).
func TestStatusOfTenantsAtTheirQuota(t *testing.T) {
	t.Parallel()
	const tenants, calls = 400, 150
	nc, js := natstest.Connect(t)
	names := seedQuotaJournals(t, js, tenants, calls)
	start := time.Now()
	code, out, errs := ctl(t, nc.ConnectedUrl(), "--connect-timeout", "2s", "status", "--json")
	took := time.Since(start)
	var sts []tenantStatus
	if code != exitOK || json.Unmarshal([]byte(out), &sts) != nil {
		t.Fatalf("status of %d tenants: exit %d after %v, stderr %q", tenants, code, took, errs)
	}
	t.Logf("status of %d tenants with %d calls each: %v", tenants, calls, took)
	checkQuotaUsed(t, sts, names, calls)
}
