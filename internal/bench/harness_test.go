package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// The contract's names (CONTRACT.md, deploy/nats). They are written out
// rather than taken from internal/queue: the harness checks the worker from
// the outside, as a publisher would.
const (
	prefix         = "mde.offboard"
	streamRequests = "MDE_OFFBOARD_REQUESTS"
	streamResults  = "MDE_OFFBOARD_RESULTS"
	bucketLedger   = "MDE_OFFBOARD_LEDGER"
	consumerAll    = "unrouted"
)

var apis = []string{mdesim.APIOffboard, mdesim.APIMachines, mdesim.APIMachineActions}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ---- settings ----

// timeScale is the time compression factor, BENCH_SCALE (default 60).
func timeScale(tb testing.TB) float64 {
	tb.Helper()
	s := os.Getenv("BENCH_SCALE")
	if s == "" {
		return 60
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		tb.Fatalf("BENCH_SCALE=%q: want a positive number", s)
	}
	return f
}

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive whole number", name, s)
	}
	return n
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a positive duration such as 90s", name, s)
	}
	return d
}

// documented are the documented limits of every API: 100/1m and 1500/1h.
func documented() []mdesim.Window {
	return []mdesim.Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}
}

// scaled returns windows with their lengths divided by factor.
func scaled(ws []mdesim.Window, factor float64) []mdesim.Window {
	out := make([]mdesim.Window, len(ws))
	for i, w := range ws {
		out[i] = mdesim.Window{Count: w.Count, Length: time.Duration(float64(w.Length) / factor)}
	}
	return out
}

func windowsString(ws []mdesim.Window) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%d/%v", w.Count, w.Length)
	}
	return strings.Join(parts, " + ")
}

// ---- the environment: NATS, simulator, tenants file ----

type options struct {
	tenants  []string
	machines int // per tenant, registered in the simulator
	// windows apply to every API in both the simulator and the tenants
	// file; nil means the documented limits, in real time.
	windows   []mdesim.Window
	unlimited bool // no limits in the simulator, huge ones in the file
	latency   time.Duration
	// maxConsumers is the NATS server's default_max_consumers: 0 keeps the
	// server's default (1000 per stream), -1 lifts it.
	maxConsumers int
	// natsDir, if set, holds the NATS server's storage instead of the
	// test's temporary directory (a tmpfs such as /dev/shm).
	natsDir string
	// nodes, if set, runs NATS as natstest servers the benchmark can shut
	// down and restart: one, or a cluster of several.
	nodes int
	// http2 has the simulator offer HTTP/2: the worker's calls then share
	// a connection instead of taking one each. BENCH_HTTP2=1 sets it for
	// every benchmark.
	http2 bool
	// onCall, if set, is told of each API call once it is answered (the
	// answer not yet sent).
	onCall func(mdesim.Call)
	// actionsFinishAfter, if set, is how long an action stays Pending
	// (default a millisecond).
	actionsFinishAfter time.Duration
}

type tenant struct {
	name, id, clientID string
	secret             string // the client secret, for the benchmarks' own calls
	index              int
}

type harness struct {
	tb      testing.TB
	dir     string
	ns      *server.Server    // nil when opts.nodes is set
	cluster *natstest.Cluster // set when opts.nodes is
	url     string            // the NATS URLs workers get
	nc      *nats.Conn
	js      jetstream.JetStream
	sim     *mdesim.Server
	opts    options
	tenants []*tenant
	config  string
	base    string // the simulator's URL
	calls   *callCounter

	mu    sync.Mutex
	procs []*proc
}

// newHarness starts NATS with JetStream and the simulator, and writes the
// tenants file. Workers are started with startWorker.
func newHarness(tb testing.TB, o options) *harness {
	tb.Helper()
	workerBinary(tb) // build first: a build error is the first thing to see
	h := &harness{tb: tb, dir: tb.TempDir(), opts: o, calls: newCallCounter()}
	store := filepath.Join(h.dir, "nats")
	if o.natsDir != "" {
		dir, err := os.MkdirTemp(o.natsDir, "mde-offboard-bench-nats-")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = os.RemoveAll(dir) })
		store = dir
	}

	h.startNATS(store)
	var err error
	if h.nc, err = nats.Connect(h.url, nats.Name("mde-offboard-bench"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.nc.Close)
	if h.js, err = jetstream.New(h.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		tb.Fatal(err)
	}
	h.startSim()
	h.writeTenants()
	// Workers go first, then the simulator and NATS (cleanups run last
	// registered, first run).
	tb.Cleanup(h.stopAll)
	return h
}

// startNATS starts the NATS server, or the natstest servers.
func (h *harness) startNATS(store string) {
	tb, o := h.tb, h.opts
	if o.nodes > 0 {
		h.cluster = natstest.Start(tb, o.nodes)
		h.url = h.cluster.URLs()
		return
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "mde-offboard-bench", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: store,
		NoSigs: true, NoLog: true, MaxPayload: 1 << 20,
		JetStreamLimits: server.JSLimitOpts{DefaultMaxConsumers: o.maxConsumers},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("NATS not ready after 10s")
	}
	h.ns, h.url = ns, ns.ClientURL()
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
}

// startSim starts the simulator with the harness's limits.
func (h *harness) startSim() {
	o := h.opts
	simOpts := mdesim.Options{
		Unlimited: o.unlimited,
		Latency:   o.latency,
		// Actions finish at once, so a second call for a device would make
		// a second action instead of meeting ActiveRequestAlreadyExists:
		// duplicate calls show as duplicate actions.
		ActionCompleteAfter: cmp.Or(o.actionsFinishAfter, time.Millisecond),
		OnCall: func(c mdesim.Call) {
			h.calls.record(c)
			if o.onCall != nil {
				o.onCall(c)
			}
		},
		HTTP2: o.http2 || os.Getenv("BENCH_HTTP2") == "1",
	}
	if o.windows != nil && !o.unlimited {
		simOpts.Limits = map[string][]mdesim.Window{}
		for _, api := range apis {
			simOpts.Limits[api] = o.windows
		}
	}
	h.sim = mdesim.New(simOpts)
	h.base = h.sim.StartTLS()
	h.tb.Cleanup(h.sim.Close)
}

// writeTenants registers the tenants and their devices in the simulator
// and writes the tenants file.
func (h *harness) writeTenants() {
	tb, o, base := h.tb, h.opts, h.base
	ca := filepath.Join(h.dir, "ca.pem")
	if err := os.WriteFile(ca, h.sim.CertPEM(), 0o600); err != nil {
		tb.Fatal(err)
	}

	limits := ""
	switch {
	case o.unlimited:
		limits = "    limits:\n"
		for _, api := range apis {
			limits += fmt.Sprintf("      %s: [\"10000000/1s\"]\n", api)
		}
	case o.windows != nil:
		specs := make([]string, len(o.windows))
		for i, w := range o.windows {
			specs[i] = fmt.Sprintf("%q", fmt.Sprintf("%d/%v", w.Count, w.Length))
		}
		limits = "    limits:\n"
		for _, api := range apis {
			limits += fmt.Sprintf("      %s: [%s]\n", api, strings.Join(specs, ", "))
		}
	}
	// BENCH_MAX_IN_FLIGHT sets every tenant's maxInFlight; 0 leaves the
	// worker's default.
	if n := envInt(tb, "BENCH_MAX_IN_FLIGHT", 0); n > 0 {
		limits += fmt.Sprintf("    maxInFlight: %d\n", n)
	}
	var yaml strings.Builder
	yaml.WriteString("tenants:\n")
	now := time.Now()
	for i, name := range o.tenants {
		t := &tenant{
			name: name, index: i,
			id:       fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1),
			clientID: fmt.Sprintf("%08x-1111-4000-8000-%012x", i+1, i+1),
			secret:   fmt.Sprintf("bench-secret-%d-%d", i, now.UnixNano()),
		}
		secret := t.secret
		h.sim.AddTenant(mdesim.Tenant{TenantID: t.id, ClientID: t.clientID, ClientSecret: secret})
		for m := range o.machines {
			h.sim.AddMachine(t.id, mdesim.Machine{ID: machineID(i, m), ComputerDNSName: fmt.Sprintf("pc-%06d.%s.local", m, name),
				OSPlatform: "Windows11", LastSeen: now.Add(-time.Hour)})
		}
		secretFile := filepath.Join(h.dir, name+".secret")
		if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&yaml, "  - name: %s\n    tenantId: %s\n    clientId: %s\n    clientSecretFile: %s\n"+
			"    apiBaseURL: %s\n    authorityHost: %s\n    caFile: %s\n%s",
			name, t.id, t.clientID, secretFile, base, base, ca, limits)
		h.tenants = append(h.tenants, t)
	}
	h.config = filepath.Join(h.dir, "worker.yaml")
	if err := os.WriteFile(h.config, []byte(yaml.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// machineID is the id of device m of tenant t: 40 lowercase hex digits.
func machineID(t, m int) string { return fmt.Sprintf("%08x%032x", t+1, m) }

func tenantNames(prefix string, n int) []string {
	width := len(strconv.Itoa(n - 1))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%0*d", prefix, width, i)
	}
	return out
}

// progress prints a line on stderr with -v, so long runs show where they are.
func (h *harness) progress(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "    [bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// waitSetup waits until the worker has created what a publisher needs: the
// request stream, both consumers of every tenant, the unrouted consumer,
// the results stream and the ledger.
func (h *harness) waitSetup(timeout time.Duration) time.Duration {
	h.tb.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(h.tb.Context(), timeout)
	defer cancel()
	want := map[string]bool{consumerAll: true}
	for _, t := range h.tenants {
		want["tenant-"+t.name] = true
		want["bulk-"+t.name] = true
	}
	for {
		missing := h.setupMissing(ctx, want)
		if missing == "" {
			return time.Since(start)
		}
		if err := h.exitedEarly(); err != nil {
			h.tb.Fatal(err)
		}
		select {
		case <-ctx.Done():
			h.tb.Fatalf("worker setup not done after %v: %s missing\n%s", timeout, missing, h.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *harness) setupMissing(ctx context.Context, want map[string]bool) string {
	// Each lookup has its own bound, so that a lookup that hangs is told
	// apart from one that says the thing is not there.
	lookup := func(f func(context.Context) error) error {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return f(lctx)
	}
	var s jetstream.Stream
	if err := lookup(func(ctx context.Context) (err error) { s, err = h.js.Stream(ctx, streamRequests); return err }); err != nil {
		return "stream " + streamRequests + " (" + err.Error() + ")"
	}
	if err := lookup(func(ctx context.Context) error { _, err := h.js.Stream(ctx, streamResults); return err }); err != nil {
		return "stream " + streamResults + " (" + err.Error() + ")"
	}
	if err := lookup(func(ctx context.Context) error { _, err := h.js.KeyValue(ctx, bucketLedger); return err }); err != nil {
		return "bucket " + bucketLedger + " (" + err.Error() + ")"
	}
	have := map[string]bool{}
	names := s.ConsumerNames(ctx)
	for n := range names.Name() {
		have[n] = true
	}
	if err := names.Err(); err != nil {
		return "consumer list (" + err.Error() + ")"
	}
	missing := 0
	for n := range want {
		if !have[n] {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Sprintf("%d consumers", missing)
	}
	return ""
}

// ---- publishing ----

type request struct {
	tenant *tenant
	id     string
	device int
	bulk   bool
}

func (h *harness) requestMsg(r request) *nats.Msg {
	subject := prefix + ".request." + r.tenant.name
	if r.bulk {
		subject += ".bulk"
	}
	m := nats.NewMsg(subject)
	m.Data = fmt.Appendf(nil, `{"requestId":%q,"machineId":%q,"requestedBy":"bench","source":"bench"}`,
		r.id, machineID(r.tenant.index, r.device))
	m.Header.Set(jetstream.MsgIDHeader, r.tenant.name+":"+r.id)
	return m
}

// requests builds n requests per tenant for devices 0..n-1.
func requests(tenants []*tenant, n int, bulk bool) []request {
	out := make([]request, 0, n*len(tenants))
	for i := range n { // interleaved, as several sources would publish
		for _, t := range tenants {
			out = append(out, request{tenant: t, id: fmt.Sprintf("r%07d", i), device: i, bulk: bulk})
		}
	}
	return out
}

// publishBatch is how many asynchronous publishes go out before their
// acknowledgements are awaited: under the client's limit of outstanding
// ones (4096 here), past which a publish fails once it has waited 200 ms.
const publishBatch = 2048

// publishAsync publishes the requests in batches, each acknowledged by the
// stream before the next. It returns how many were stored.
func (h *harness) publishAsync(reqs []request) (int, error) {
	stored := 0
	for start := 0; start < len(reqs); start += publishBatch {
		end := min(start+publishBatch, len(reqs))
		futures := make([]jetstream.PubAckFuture, 0, end-start)
		for _, r := range reqs[start:end] {
			f, err := h.js.PublishMsgAsync(h.requestMsg(r))
			if err != nil {
				return stored, fmt.Errorf("publish request %d: %w", start+len(futures), err)
			}
			futures = append(futures, f)
		}
		select {
		case <-h.js.PublishAsyncComplete():
		case <-time.After(2 * time.Minute):
			return stored, fmt.Errorf("publish: batch at %d not acknowledged after 2m", start)
		}
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				if ack.Duplicate {
					return stored, fmt.Errorf("publish request %d: dropped as a duplicate", start+i)
				}
				stored++
			case err := <-f.Err():
				return stored, fmt.Errorf("publish request %d: %w", start+i, err)
			}
		}
	}
	return stored, nil
}

// ---- results ----

type resultRecord struct {
	first  time.Time // arrival of the first copy
	stored time.Time // when the stream stored the first copy
	copies int
	outcome,
	code string
}

// collector reads the results stream from the start.
type collector struct {
	mu      sync.Mutex
	results map[string]*resultRecord // by tenant/requestId
	cc      jetstream.ConsumeContext
}

func (h *harness) collect() *collector {
	h.tb.Helper()
	c := &collector{results: map[string]*resultRecord{}}
	cons, err := h.js.OrderedConsumer(h.tb.Context(), streamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + ".result.>"},
	})
	if err != nil {
		h.tb.Fatal(err)
	}
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		var r struct {
			RequestID, Tenant, Outcome string
			Error                      *struct{ Code string }
		}
		_ = json.Unmarshal(m.Data(), &r)
		key := r.Tenant + "/" + r.RequestID
		c.mu.Lock()
		defer c.mu.Unlock()
		rec := c.results[key]
		if rec == nil {
			rec = &resultRecord{first: now, outcome: r.Outcome}
			if meta, err := m.Metadata(); err == nil {
				rec.stored = meta.Timestamp
			}
			if r.Error != nil {
				rec.code = r.Error.Code
			}
			c.results[key] = rec
		}
		rec.copies++
	})
	if err != nil {
		h.tb.Fatal(err)
	}
	h.tb.Cleanup(c.cc.Stop)
	return c
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.results)
}

func (c *collector) get(key string) (resultRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.results[key]
	if !ok {
		return resultRecord{}, false
	}
	return *r, true
}

// waitFor waits until n distinct requests have results or timeout passes,
// calling tick on the way. It returns the count reached.
func (h *harness) waitFor(c *collector, n int, timeout time.Duration, tick func()) int {
	deadline := time.Now().Add(timeout)
	last, lastChange := -1, time.Now()
	for {
		got := c.count()
		if got >= n || time.Now().After(deadline) {
			return got
		}
		tick()
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > 10*time.Second {
			h.progress("%d of %d results, none for %v", got, n, time.Since(lastChange).Round(time.Second))
			lastChange = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// summary of a tenant's results: distinct results, extra copies, the
// outcomes other than created, and the latest arrival.
func (c *collector) tenantSummary(t string) (results, extraCopies int, others map[string]int, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	others = map[string]int{}
	for key, r := range c.results {
		if !strings.HasPrefix(key, t+"/") {
			continue
		}
		results++
		extraCopies += r.copies - 1
		if r.outcome != "created" {
			o := r.outcome
			if r.code != "" {
				o += "(" + r.code + ")"
			}
			others[o]++
		}
		if r.first.After(last) {
			last = r.first
		}
	}
	return results, extraCopies, others, last
}
