package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// BenchmarkStatusAtFullQuota prints how long status takes of 1000
// tenants (STATUS_BENCH_TENANTS) each of which made its hour's quota of
// offboard calls, 1500: the quota journal holds 750 entries per tenant
// (run it with -benchtime 1x; seeding takes about a minute).
func BenchmarkStatusAtFullQuota(b *testing.B) {
	tenants, calls := 1000, 1500
	if n, err := strconv.Atoi(os.Getenv("STATUS_BENCH_TENANTS")); err == nil && n > 0 {
		tenants = n
	}
	_, js := natstest.Connect(b)
	seeded := time.Now()
	names := seedQuotaJournals(b, js, tenants, calls)
	b.Logf("%d tenants' quota journals written in %v", len(names), time.Since(seeded).Round(time.Millisecond))
	c := &cli{js: js, timeout: time.Hour, subjects: offboard.Subjects{}}
	for b.Loop() {
		start := time.Now()
		sts, err := c.status(b.Context(), "", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("status of %d tenants with %d calls each in the hour: %v", len(sts), calls, time.Since(start).Round(time.Millisecond))
		checkQuotaUsed(b, sts, names, calls)
	}
}
