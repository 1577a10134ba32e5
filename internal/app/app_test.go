package app

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

var scaled = []mdesim.Window{{Count: 10, Length: 200 * time.Millisecond}, {Count: 40, Length: 2 * time.Second}}

// TestPipeline pushes 300 requests over two tenants through the worker
// against the simulator, with windows scaled down, duplicates, an injected
// 429 and bad requests.
func TestPipeline(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{
		sim:      mdesim.Options{Limits: map[string][]mdesim.Window{"offboard": scaled}},
		limits:   `["10/200ms", "40/2s"]`,
		machines: 150,
		logger:   zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core(), core)),
	})
	results := e.collect("mde.offboard.result.>")

	// The simulator throttles contoso's first call: the tenant must pause
	// for the Retry-After and lose nothing.
	contoso := e.tenants["contoso"]
	e.sim.InjectStatus(contoso.tenantID, "offboard", http.StatusTooManyRequests, "429",
		"API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, time.Second)

	type sent struct{ tenant, id, machine string }
	var good []sent
	for i := range 150 {
		for _, name := range []string{"contoso", "fabrikam"} {
			tt := e.tenants[name]
			id := fmt.Sprintf("%s-%03d", name, i)
			m := tt.machines[i]
			subject := "mde.offboard.request." + name
			if i%3 == 0 {
				subject += ".bulk"
			}
			e.publish(subject, map[string]any{"requestId": id, "machineId": m.ID, "source": "test"}, id)
			good = append(good, sent{name, id, m.ID})
		}
	}
	// The same request again with the same Nats-Msg-Id: the stream drops it.
	dup := e.publish("mde.offboard.request.contoso",
		map[string]any{"requestId": "contoso-007", "machineId": contoso.machines[7].ID}, "contoso-007")
	if !dup.Duplicate {
		t.Error("republished request with the same Nats-Msg-Id was stored again")
	}
	// The same requestId under a new message id: answered from the ledger.
	e.publish("mde.offboard.request.contoso",
		map[string]any{"requestId": "contoso-008", "machineId": contoso.machines[8].ID}, "contoso-008-again")

	// Bad requests: none may reach the API.
	bad := map[string]string{ // requestId -> body
		"bad-json":     `{"requestId": "bad-json", "machineId": `,
		"bad-hex":      `{"requestId": "bad-hex", "machineId": "zz5bc9d7e413ddd7902c2932e418702b84d0cc07"}`,
		"bad-path":     `{"requestId": "bad-path", "machineId": "../../api/machines/1e5bc9d7e413ddd7902c2"}`,
		"bad-both":     `{"requestId": "bad-both", "machineId": "` + contoso.machines[0].ID + `", "computerDnsName": "pc-0000.contoso.local"}`,
		"bad-neither":  `{"requestId": "bad-neither"}`,
		"bad-tenant":   `{"requestId": "bad-tenant", "machineId": "` + contoso.machines[1].ID + `", "tenant": "fabrikam"}`,
		"bad-comment":  `{"requestId": "bad-comment", "machineId": "` + contoso.machines[2].ID + `", "comment": "` + strings.Repeat("x", 1001) + `"}`,
		"bad-dnsname":  `{"requestId": "bad-dnsname", "computerDnsName": "pc/../../x"}`,
		"bad-array":    `[1, 2, 3]`,
		"bad-id-chars": `{"requestId": "a b/c", "machineId": "` + contoso.machines[3].ID + `"}`,
		// Over 64 KiB, within the stream's room for headers: taken, and
		// answered; its id is not read.
		"bad-size": `{"requestId": "bad-size", "machineId": "` + contoso.machines[4].ID + `", "pad": "` + strings.Repeat("x", 64<<10) + `"}`,
	}
	for id, body := range bad {
		e.publish("mde.offboard.request.contoso", body, "msg-"+id)
	}
	// Beyond 64 KiB and the room for headers: refused at publish time.
	big := jetstreamPublishErr(e, "mde.offboard.request.contoso", strings.Repeat("x", 70<<10))
	if big == nil {
		t.Error("a request over 68 KiB was accepted by the stream")
	}

	// 300 good + 7 bad with an id + 4 bad without one (keyed by sequence).
	results.wait(t, 300+len(bad), 60*time.Second)
	time.Sleep(300 * time.Millisecond) // let any duplicate result show itself
	got := results.wait(t, 0, time.Second)

	for key, rs := range got {
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want exactly one", key, len(rs))
		}
	}
	for _, s := range good {
		rs := got[s.tenant+"/"+s.id]
		if len(rs) == 0 {
			t.Errorf("%s/%s: no result", s.tenant, s.id)
			continue
		}
		r := rs[0]
		if r.Outcome != offboard.OutcomeCreated || r.MachineID != s.machine || len(r.MachineAction) == 0 {
			t.Errorf("%s/%s: outcome %q machine %q action %d bytes (error %+v)", s.tenant, s.id, r.Outcome, r.MachineID, len(r.MachineAction), r.Error)
		}
	}
	for id := range bad {
		key := "contoso/" + id
		if id == "bad-array" || id == "bad-id-chars" || id == "bad-json" || id == "bad-size" {
			continue // no readable id: keyed by sequence below
		}
		rs := got[key]
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeFailed || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeInvalidRequest {
			t.Errorf("%s: results %+v, want one invalid_request", key, rs)
		}
	}
	bySeq := 0
	for key, rs := range got {
		if strings.HasPrefix(key, "contoso/seq-") {
			bySeq++
			if rs[0].Error == nil || rs[0].Error.Code != offboard.CodeInvalidRequest {
				t.Errorf("%s: %+v, want invalid_request", key, rs[0])
			}
		}
	}
	if bySeq != 4 {
		t.Errorf("%d results without a request id, want 4", bySeq)
	}

	// The API: one action per device, no window ever exceeded, no bad call.
	for name, tt := range e.tenants {
		e.oneActionEach(name, 150)
		for _, w := range scaled {
			if n := e.sim.MaxInWindow(tt.tenantID, "offboard", w); n > w.Count {
				t.Errorf("%s: %d calls in one %v window, limit %d", name, n, w.Length, w.Count)
			}
		}
		if n := e.sim.ThrottledCount(tt.tenantID, "offboard"); n != 0 {
			t.Errorf("%s: the simulator throttled %d calls for full windows", name, n)
		}
	}
	badMachines := map[string]bool{contoso.machines[0].ID: true, contoso.machines[1].ID: true, contoso.machines[2].ID: true, contoso.machines[3].ID: true}
	offboards := 0
	for _, c := range e.sim.Calls() {
		if c.API == "offboard" {
			offboards++
		}
		if strings.Contains(c.Path, "..") || strings.Contains(c.Path, "zz5bc9") {
			t.Errorf("a bad request reached the API: %s %s", c.Method, c.Path)
		}
	}
	// 300 devices + the throttled call; machines 0-3 are offboarded once by
	// their good requests, never by the bad ones.
	if offboards != 301 {
		t.Errorf("%d offboard calls, want 301 (300 devices + 1 throttled)", offboards)
	}
	for id := range badMachines {
		for _, c := range e.sim.Calls() {
			if c.API == "offboard" && c.MachineID == id && c.Status != http.StatusCreated && c.Status != http.StatusTooManyRequests {
				t.Errorf("device %s: offboard call answered %d", id, c.Status)
			}
		}
	}
	// The worker pauses the tenant when it reads the 429, and logs it.
	// Calls may still reach the API after the simulator answered 429 and
	// before the worker read it: on a loaded machine that read can come a
	// few hundred milliseconds late, and places freed meanwhile start new
	// calls. Once the pause is applied, only calls that passed their last
	// check before it may still arrive: at most one for each of the other
	// maxInFlight-1 (3) places. A worker that ignored the pause would make
	// up to 40 in its Retry-After.
	var pausedAt time.Time
	for _, l := range logs.FilterMessage("throttled: tenant paused").All() {
		if l.ContextMap()["tenant"] == "contoso" {
			pausedAt = l.Time
			break
		}
	}
	if pausedAt.IsZero() {
		t.Error("the injected 429 did not pause contoso")
	}
	var throttledAt time.Time
	var during []time.Duration
	for _, c := range e.sim.Calls() {
		if c.TenantID != contoso.tenantID || c.API != "offboard" {
			continue
		}
		switch {
		case c.Status == http.StatusTooManyRequests && throttledAt.IsZero():
			throttledAt = c.At
		case !pausedAt.IsZero() && c.At.After(pausedAt) && c.At.Before(throttledAt.Add(time.Second)):
			during = append(during, c.At.Sub(pausedAt))
		}
	}
	if len(during) > 3 {
		t.Errorf("contoso made %d calls after the worker paused it for a 429 (at %v after the pause), want at most the 3 already under way", len(during), during)
	}
	if throttledAt.IsZero() {
		t.Error("the injected 429 was never answered")
	}
	if v := metricValue(t, e, "mde_offboard_throttled_total", map[string]string{"tenant": "contoso", "api": "offboard"}); v != 1 {
		t.Errorf("throttled_total{contoso} = %v, want 1", v)
	}

	// Nothing left behind: every request was acked after its result.
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if n := e.streamMsgs(offboard.StreamDead); n != uint64(len(bad)) {
		t.Errorf("%d dead letters, want %d", n, len(bad))
	}
	checkMetricsLint(t, e)
}

func jetstreamPublishErr(e *env, subject, body string) error {
	_, err := e.js.Publish(e.t.Context(), subject, []byte(body))
	return err
}

// metricValue sums the samples of a metric whose labels include want.
func metricValue(t *testing.T, e *env, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// checkMetricsLint scrapes /metrics over HTTP and runs Prometheus' own
// linter (the checks of promtool check metrics) on what it gathers.
func checkMetricsLint(t *testing.T, e *env) {
	t.Helper()
	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"mde_offboard_requests_received_total", "mde_offboard_results_total", "mde_offboard_api_calls_total",
		"mde_offboard_api_call_duration_seconds", "mde_offboard_limiter_wait_seconds", "mde_offboard_quota_remaining_calls",
		"mde_offboard_throttled_total", "mde_offboard_backlog_requests", "mde_offboard_oldest_waiting_seconds",
		"mde_offboard_request_to_result_seconds", "mde_offboard_build_info",
		"mde_offboard_in_flight_requests", "mde_offboard_nats_connected",
	} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, tt := range e.tenants {
		if strings.Contains(string(body), tt.secret) {
			t.Error("/metrics contains a client secret")
		}
	}
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}
