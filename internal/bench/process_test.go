package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// ---- the worker binary ----

var (
	buildOnce sync.Once
	buildDir  string
	workerBin string
	workerHlp string
	buildErr  error
)

// workerBinary builds ./cmd/worker once per test process (or takes
// BENCH_WORKER) and returns its path and its --help text.
func workerBinary(tb testing.TB) (path, help string) {
	tb.Helper()
	buildOnce.Do(func() {
		workerBin = os.Getenv("BENCH_WORKER")
		if workerBin == "" {
			goBin, err := exec.LookPath("go")
			if err != nil {
				buildErr = fmt.Errorf("the go command is needed to build the worker: %w", err)
				return
			}
			if buildDir, err = os.MkdirTemp("", "mde-offboard-bench-"); err != nil {
				buildErr = err
				return
			}
			workerBin = filepath.Join(buildDir, "worker")
			cmd := exec.Command(goBin, "build", "-o", workerBin, "github.com/contoso-secops/mde-offboard/cmd/worker")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/worker: %w\n%s", err, out)
				return
			}
		}
		// flag prints the usage on stderr and exits 0 for --help.
		out, err := exec.Command(workerBin, "--help").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%s --help: %w\n%s", workerBin, err, out)
			return
		}
		workerHlp = string(out)
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return workerBin, workerHlp
}

var flagDefault = regexp.MustCompile(`\(default ([^)]*)\)`)

// scaledArgs passes each named duration flag of the worker (without its
// dashes) at its default divided by the time compression; a flag the
// worker lacks is left out.
func scaledArgs(tb testing.TB, factor float64, names ...string) []string {
	tb.Helper()
	_, help := workerBinary(tb)
	var args []string
	for _, name := range names {
		i := strings.Index(help, "-"+name+" ")
		if i < 0 {
			continue
		}
		entry := help[i:]
		if next := strings.Index(entry[1:], "\n  -"); next >= 0 {
			entry = entry[:next+1]
		}
		m := flagDefault.FindStringSubmatch(entry)
		if m == nil {
			continue // no default, nothing to scale
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			tb.Logf("--%s default %q is not a duration: left out", name, m[1])
			continue
		}
		args = append(args, "--"+name, time.Duration(float64(d)/factor).String())
	}
	return args
}

// prepare runs a worker until it has started, which creates the streams
// and consumers, and stops it: requests published next wait in the stream
// for the worker started after. It returns how long the start took.
func (h *harness) prepare(timeout time.Duration, extra ...string) time.Duration {
	h.tb.Helper()
	took, err := h.tryPrepare(timeout, extra...)
	if err != nil {
		h.tb.Fatal(err)
	}
	return took
}

func (h *harness) tryPrepare(timeout time.Duration, extra ...string) (time.Duration, error) {
	h.tb.Helper()
	p := h.startWorker(extra...)
	took, err := h.tryStarted(p, timeout)
	if err != nil {
		return 0, err
	}
	h.waitSetup(timeout)
	return took, p.stop(30 * time.Second)
}

// ---- worker processes ----

type proc struct {
	cmd      *exec.Cmd
	log      string
	http     string // host:port of /healthz, /readyz, /metrics
	started  time.Time
	done     chan struct{}
	err      error       // once done
	killed   atomic.Bool // by the harness
	stopped  atomic.Bool // by the harness
	reported atomic.Bool // its exit on its own was reported
}

// workerListen is the address a worker process is told to serve HTTP on:
// found free here, listened on by the process once it has started. Not a
// port the kernel chose: that comes from the range outgoing connections
// take their local ports from, and one made meanwhile could hold it.
func workerListen(tb testing.TB) string {
	tb.Helper()
	return natstest.FreeAddr(tb)
}

// startWorker starts a worker process against the harness's NATS server
// and tenants file. Its HTTP port is picked here, not by the worker, so that
// /healthz tells when it has started.
func (h *harness) startWorker(extra ...string) *proc {
	h.tb.Helper()
	bin, _ := workerBinary(h.tb)
	httpAddr := workerListen(h.tb)
	args := []string{"--nats-url", h.url, "--config", h.config, "--listen", httpAddr,
		"--log-level", "warn", "--shutdown-timeout", "5s"}
	args = append(args, extra...)
	// BENCH_WORKER_ARGS adds flags to every worker, to try a setting.
	args = append(args, strings.Fields(os.Getenv("BENCH_WORKER_ARGS"))...)
	profileDir := os.Getenv("BENCH_PROFILE")
	if profileDir != "" {
		args = append(args, "--pprof")
	}
	h.mu.Lock()
	n := len(h.procs)
	h.mu.Unlock()
	logPath := filepath.Join(h.dir, fmt.Sprintf("worker-%02d.log", n))
	logFile, err := os.Create(logPath)
	if err != nil {
		h.tb.Fatal(err)
	}
	p := &proc{cmd: exec.Command(bin, args...), log: logPath, http: httpAddr, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if limit := os.Getenv("BENCH_WORKER_GOMEMLIMIT"); limit != "" {
		// The worker's alone: the benchmark process holds NATS too.
		p.cmd.Env = append(os.Environ(), "GOMEMLIMIT="+limit)
	}
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close()
		h.tb.Fatal(err)
	}
	p.started = time.Now()
	go func() {
		p.err = p.cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	if profileDir != "" {
		go h.profile(p, filepath.Join(profileDir, fmt.Sprintf("cpu-%02d.pprof", n)))
	}
	return p
}

// fetchProfile saves one of the worker's /debug/pprof/ answers to path.
func fetchProfile(p *proc, what, path string, timeoutSecs int) error {
	resp, err := (&http.Client{Timeout: time.Duration(timeoutSecs) * time.Second}).
		Get(fmt.Sprintf("http://%s/debug/pprof/%s", p.http, what))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// profile takes a CPU profile of the worker, BENCH_PROFILE_SECONDS long
// (default 15), once it serves /healthz, into path, then its heap
// (heap-NN.pprof, and heap-NN.txt with the runtime's memory statistics) and
// its goroutines (goroutine-NN.txt).
// Profiling is a
// diagnostic: a failure is printed, not fatal.
func (h *harness) profile(p *proc, path string) {
	secs := 15
	if s := os.Getenv("BENCH_PROFILE_SECONDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			secs = n
		}
	}
	err := func() error {
		if _, err := h.tryStarted(p, 2*time.Minute); err != nil {
			return err
		}
		if err := fetchProfile(p, fmt.Sprintf("profile?seconds=%d", secs), path, secs+30); err != nil {
			return err
		}
		// The heap as the CPU profile ends: mostly under full load, with
		// the runtime's memory statistics (stacks, heap goal) as text,
		// and the goroutines.
		base := strings.TrimSuffix(path, ".pprof")
		for what, file := range map[string]string{
			"heap":              strings.Replace(path, "cpu-", "heap-", 1),
			"heap?debug=1":      strings.Replace(base, "cpu-", "heap-", 1) + ".txt",
			"goroutine?debug=1": strings.Replace(base, "cpu-", "goroutine-", 1) + ".txt",
		} {
			if err := fetchProfile(p, what, file, 30); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		h.progress("profile of worker pid %d: %v", p.pid(), err)
		return
	}
	h.progress("profile of worker pid %d: %s", p.pid(), path)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitStarted waits until the worker serves /healthz, which it does once it
// has set up the streams and started taking requests. It returns the time
// since launch.
func (h *harness) waitStarted(p *proc, timeout time.Duration) time.Duration {
	h.tb.Helper()
	took, err := h.tryStarted(p, timeout)
	if err != nil {
		h.tb.Fatal(err)
	}
	return took
}

func (h *harness) tryStarted(p *proc, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("http://" + p.http + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		if err := h.exitedEarly(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("worker pid %d: no /healthz after %v\n%s", p.pid(), timeout, tail(p.log, 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready asks the worker's /readyz once and says how it answered and how
// long that took.
func (p *proc) ready() string {
	start := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + p.http + "/readyz")
	if err != nil {
		return fmt.Sprintf("no answer after %v (%v)", time.Since(start).Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	return fmt.Sprintf("%d %q after %v", resp.StatusCode, strings.TrimSpace(string(body)), time.Since(start).Round(time.Millisecond))
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits; after timeout it kills. It returns the
// process's exit error, if any.
func (p *proc) stop(timeout time.Duration) error {
	if !p.running() {
		return p.exitErr()
	}
	p.stopped.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("worker pid %d still running %v after SIGTERM: killed", p.pid(), timeout)
	}
}

func (p *proc) exitErr() error {
	if p.err == nil || p.killed.Load() || p.reported.Load() {
		return nil
	}
	return fmt.Errorf("worker pid %d: %w; log %s:\n%s", p.pid(), p.err, p.log, tail(p.log, 10))
}

// exitedEarly reports a worker that ended without the harness asking.
func (h *harness) exitedEarly() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.procs {
		if !p.running() && !p.killed.Load() && !p.stopped.Load() && !p.reported.Load() {
			p.reported.Store(true)
			return fmt.Errorf("worker pid %d exited on its own (%w); log %s:\n%s", p.pid(), p.err, p.log, tail(p.log, 20))
		}
	}
	return nil
}

// restartCrashed starts a new worker, with the same arguments, for each
// that exited on its own, and logs why it ended: a crash is a finding to
// report with the figures, not the end of the run. It returns how many it
// restarted.
func (h *harness) restartCrashed(args []string) int {
	n := 0
	for {
		err := h.exitedEarly()
		if err == nil {
			return n
		}
		h.tb.Logf("restarting a worker: %v", err)
		h.startWorker(args...)
		n++
	}
}

// newest returns the worker started last.
func (h *harness) newest() *proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.procs[len(h.procs)-1]
}

// close stops the workers, the simulator and NATS before the test ends;
// the cleanups find them stopped.
func (h *harness) close() {
	h.stopAll()
	h.nc.Close()
	h.sim.Close()
	if h.ns != nil {
		h.ns.Shutdown()
		h.ns.WaitForShutdown()
	}
}

func (h *harness) stopAll() {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if err := p.stop(10 * time.Second); err != nil {
				h.tb.Logf("stop: %v", err)
			}
		})
	}
	wg.Wait()
}

// procStats are a process's figures from /proc.
type procStats struct {
	hwm, rss int64         // bytes: peak and current resident set
	cpu      time.Duration // user + system
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func readProcStats(pid int) (procStats, error) {
	var st procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return st, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		if key == "VmHWM" {
			st.hwm = kb << 10
		} else {
			st.rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// Fields after the command name, which may hold spaces: state is the
	// 3rd field of the line, utime the 14th, stime the 15th.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return st, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	st.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	return st, nil
}

// openFiles counts a process's open file descriptors (sockets included).
func openFiles(pid int) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(fds)
}

// selfCPU is the CPU time of this process (NATS, the simulator, the
// publisher and collector).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ---- worker logs ----

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 600 {
			lines[i] = l[:600] + fmt.Sprintf("… (%d bytes)", len(l))
		}
	}
	return strings.Join(lines, "\n")
}

func (h *harness) logTail() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, p := range h.procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.log, tail(p.log, 10))
	}
	return b.String()
}

// countInLogs counts the occurrences of s in the workers' logs.
func (h *harness) countInLogs(s string) int {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	n := 0
	for _, p := range procs {
		if data, err := os.ReadFile(p.log); err == nil {
			n += strings.Count(string(data), s)
		}
	}
	return n
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// logSummary counts the workers' warnings and errors by message, and lines
// that are not log records (panics, runtime errors).
func (h *harness) logSummary() (summary string, panics int) {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	counts := map[string]int{}
	for _, p := range procs {
		f, err := os.Open(p.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var rec struct{ Level, Msg, Error string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Level != "" {
				key := rec.Level + ": " + rec.Msg
				if rec.Error != "" {
					key += ": " + shorten(rec.Error, 120)
				}
				counts[key]++
				continue
			}
			if strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
				panics++
				counts["crash: "+line]++
			}
		}
		_ = f.Close()
	}
	if len(counts) == 0 {
		return "none", panics
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	var parts []string
	for i, k := range keys {
		if i == 6 {
			parts = append(parts, fmt.Sprintf("... %d more kinds", len(keys)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %q", counts[k], k))
	}
	return strings.Join(parts, "; "), panics
}
