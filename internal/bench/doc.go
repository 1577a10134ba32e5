// Package bench measures the real worker end to end: the command built
// from ./cmd/worker runs as one or more subprocesses against a NATS server
// with JetStream and the Defender simulator, both started in the benchmark
// process. Nothing here is imported; the package holds only tests and
// benchmarks.
//
//	make bench                                   # every benchmark, default settings
//	go test -run '^$' -bench Drain -benchtime 1x -timeout 60m ./internal/bench/
//	go test -run TestDrain ./internal/bench/     # the quick check, part of make test
//
// Time is compressed: the documented limits 100/1m and 1500/1h become
// 100/1s and 1500/1m at the default factor, in the simulator and in the
// tenants file alike. Settings, all from the environment:
//
//	BENCH_SCALE             time compression factor (default 60)
//	BENCH_WORKER            use this worker binary instead of building ./cmd/worker
//	BENCH_WORKER_ARGS       flags added to every worker ("--max-requests 256")
//	BENCH_WORKER_GOMEMLIMIT the workers' GOMEMLIMIT, theirs alone ("144MiB")
//	BENCH_PROFILE           a directory: every worker runs with --pprof, its CPU profile, heap and goroutines are saved there
//	BENCH_PROFILE_SECONDS   how long that CPU profile runs (default 15)
//	BENCH_HTTP2             1: the simulator offers HTTP/2 in every benchmark
//	BENCH_BACKLOG           requests waiting in BenchmarkBacklogMemory (default 1000000)
//	BENCH_BACKLOG_SECONDS   how long the worker runs over that backlog (default 15)
//	BENCH_OVERHEAD_N        requests of BenchmarkOverhead (default 5000)
//	BENCH_INTEREST_N        acks per retention and tenant count in BenchmarkInterestAcks (default 2000)
//	BENCH_CAMPAIGN_ROWS     rows of the large CSV of BenchmarkCampaignPublish (default 100000)
//	BENCH_PLAN_DEVICES      devices of the tenant BenchmarkPlan100k plans (default 100000)
//	BENCH_TENANTS           tenants of BenchmarkTenants1000 (default 1000)
//	BENCH_TENANTS_TIMEOUT   how long BenchmarkTenants1000 waits for 100 calls per tenant (default 4m)
//	BENCH_TENANTS_STORE     where BenchmarkTenants1000's NATS stores: disk (default) or shm (/dev/shm)
//	BENCH_REPLICAS          worker processes of BenchmarkTenants1000 over the same tenants (default 1)
//	BENCH_DRAIN_FAST        time compression of BenchmarkDrain/scale=N (default 200)
//	BENCH_MAX_IN_FLIGHT     every tenant's maxInFlight in the tenants file (default: the worker's, 4)
//	BENCH_DRAIN_PUBLISH_DURING 1: BenchmarkDrain/scale=N publishes its backlog while the worker runs, as the other Drain cases do, not before it starts
//	BENCH_IDLE_SETTLE       how long BenchmarkIdleMemory lets its workers run before measuring (default 20s)
//	BENCH_IDLE_TENANTS      idle tenants of BenchmarkIdleTenants and BenchmarkIdleMemory (default 1000)
//	BENCH_IDLE_WINDOW       how long BenchmarkIdleTenants counts JetStream API requests (default 60s)
//	BENCH_TRACKED           actions followed in BenchmarkTracking250k (default 250000)
//	BENCH_TRACKING_SECONDS  how long the worker runs over them (default 40)
//
// The windows are compressed, and so are --quota-margin and --call-timeout
// in the drain and isolation benchmarks (a call of a killed worker holds
// its place in the quota for 1.5 × the call timeout). Past a factor of
// about 100 the worker's own throughput, not the windows, sets the pace.
//
// BenchmarkTenants1000 first tries a NATS server with its default limit of
// 1000 consumers per stream, reports when the worker cannot start on it,
// and then measures with that limit lifted.
//
// Benchmarks report figures and never judge them; they fail only when the
// harness itself cannot run. With -v they also print progress to stderr.
package bench
