package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// natsProxy stands between one worker process and the NATS server and
// reads what the worker publishes. When a message matches its trigger, it
// kills the worker with SIGKILL, before the message reaches the server
// (dropped with the process) or just after: nothing the worker sent after
// it reaches the server. So a kill lands exactly between two steps.
type natsProxy struct {
	tb     testing.TB
	ln     net.Listener
	target string

	mu      sync.Mutex
	trigger func(subject string, hdr, data []byte) (kill, after bool)
	// drop, while armed, loses the messages it matches on the way (a
	// stream that did not store them).
	drop    func(subject string, hdr, data []byte) bool
	victim  *proc
	fired   chan struct{}
	conns   []net.Conn
	seen    []string // subjects, for a trigger never met
	stopped atomic.Bool
}

func newNATSProxy(tb testing.TB, target string) *natsProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &natsProxy{tb: tb, ln: ln, target: strings.TrimPrefix(target, "nats://")}
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *natsProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *natsProxy) close() {
	p.stopped.Store(true)
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// arm sets the trigger (nil: none) and the process it kills; it fires
// once, and the returned channel is closed then. The kill may come from
// elsewhere (kill).
func (p *natsProxy) arm(victim *proc, trigger func(subject string, hdr, data []byte) (kill, after bool), drop func(subject string, hdr, data []byte) bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.victim, p.trigger, p.drop, p.fired = victim, trigger, drop, make(chan struct{})
	return p.fired
}

func (p *natsProxy) subjects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return uniq(p.seen)
}

// kill kills the victim once; later calls do nothing.
func (p *natsProxy) kill() {
	p.mu.Lock()
	v, fired := p.victim, p.fired
	p.victim, p.trigger, p.drop = nil, nil, nil
	p.mu.Unlock()
	if v == nil {
		return
	}
	v.kill()
	close(fired)
}

func (p *natsProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(c, s)
			_ = c.Close()
		}()
		go p.forward(c, s)
	}
}

// forward copies the client's protocol to the server one operation at a
// time, checking each publish against the trigger.
func (p *natsProxy) forward(c, s net.Conn) {
	defer func() { _ = s.Close() }()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		op := bytes.Fields(line)
		var payload []byte
		var subject string
		hdrLen := 0
		if len(op) > 0 {
			switch strings.ToUpper(string(op[0])) {
			case "PUB", "HPUB":
				n, _ := strconv.Atoi(string(op[len(op)-1]))
				if strings.EqualFold(string(op[0]), "HPUB") {
					hdrLen, _ = strconv.Atoi(string(op[len(op)-2]))
				}
				payload = make([]byte, n+2)
				if _, err := io.ReadFull(r, payload); err != nil {
					return
				}
				subject = string(op[1])
			}
		}
		kill, after, drop := false, false, false
		if subject != "" {
			p.mu.Lock()
			if len(p.seen) < 10000 {
				p.seen = append(p.seen, subject)
			}
			if p.trigger != nil {
				kill, after = p.trigger(subject, payload[:hdrLen], payload[hdrLen:len(payload)-2])
			}
			if p.drop != nil {
				drop = p.drop(subject, payload[:hdrLen], payload[hdrLen:len(payload)-2])
			}
			p.mu.Unlock()
		}
		if kill && !after {
			p.kill()
			return
		}
		if drop && !kill {
			p.mu.Lock()
			p.drop = nil // once
			p.mu.Unlock()
			continue
		}
		if _, err := s.Write(append(line, payload...)); err != nil {
			return
		}
		if kill {
			p.kill()
			return
		}
	}
}

// crashCase is a kill at one step of a request's way, or several kills,
// one after each restart.
type crashCase struct {
	name  string
	kills []crashPoint
	// byName sends the requests by computerDnsName.
	byName bool
	extra  string // YAML added to the tenant's entry
	inject func(h *harness)
	// newName restarts under another --replica-id.
	newName bool
	// beside runs a second worker all along, straight on NATS.
	beside bool
	// outcome is the outcome each request must get ("": created or
	// already_pending); code its error code.
	outcome, code string
	// tracked: each action must reach Succeeded on the action subject.
	tracked bool
}

// crashPoint is where a worker dies.
type crashPoint struct {
	// nats decides on each message the worker publishes: kill before it
	// reaches the server, or just after.
	nats func(subject string, hdr, data []byte) (kill, after bool)
	// call, if set, kills the worker during an API call it matches
	// (after the simulator acted, before the answer is sent).
	call func(c mdesim.Call) bool
	// delay, with call, kills that long after the answer instead.
	delay time.Duration
	// drop loses the messages it matches until the kill.
	drop func(subject string, hdr, data []byte) bool
}

// ledgerWrite matches a ledger write of the given state.
func ledgerWrite(state string) func(string, []byte, []byte) (bool, bool) {
	return func(subject string, _, data []byte) (bool, bool) {
		return strings.HasPrefix(subject, "$KV.MDE_OFFBOARD_LEDGER.r.") && bytes.Contains(data, []byte(`"state":"`+state+`"`)), false
	}
}

func after(f func(string, []byte, []byte) (bool, bool)) func(string, []byte, []byte) (bool, bool) {
	return func(s string, h, d []byte) (bool, bool) {
		k, _ := f(s, h, d)
		return k, true
	}
}

func journalReserve(subject string, _, data []byte) (bool, bool) {
	return strings.HasPrefix(subject, prefix+".quota.t") && bytes.Contains(data, []byte(`"res":`)), false
}

func journalPause(subject string, _, data []byte) (bool, bool) {
	return strings.HasPrefix(subject, prefix+".quota.t") && bytes.Contains(data, []byte(`"pause":`)), false
}

func resultPub(subject string, _, _ []byte) (bool, bool) {
	return strings.HasPrefix(subject, prefix+".result."), false
}

func deadPub(subject string, _, _ []byte) (bool, bool) {
	return strings.HasPrefix(subject, prefix+".dead."), false
}

func ackPub(subject string, _, data []byte) (bool, bool) {
	return strings.HasPrefix(subject, "$JS.ACK."+streamRequests+".") && bytes.HasPrefix(data, []byte("+ACK")), false
}

func deletePub(subject string, _, _ []byte) (bool, bool) {
	return strings.HasPrefix(subject, "$JS.API.STREAM.MSG.DELETE."+streamRequests), false
}

func actionPub(subject string, _, _ []byte) (bool, bool) {
	return strings.HasPrefix(subject, prefix+".action."), false
}

func trackWrite(subject string, _, data []byte) (bool, bool) {
	return strings.HasPrefix(subject, "$KV.MDE_OFFBOARD_LEDGER.") && !strings.HasPrefix(subject, "$KV.MDE_OFFBOARD_LEDGER.r."), false
}

func offboardCall(c mdesim.Call) bool { return c.API == mdesim.APIOffboard && c.Status < 300 }

func listActions(c mdesim.Call) bool { return c.API == mdesim.APIMachineActions }

func onNATS(f func(string, []byte, []byte) (bool, bool)) []crashPoint {
	return []crashPoint{{nats: f}}
}

func onCall(f func(mdesim.Call) bool) []crashPoint { return []crashPoint{{call: f}} }

func crashCases() []crashCase {
	inject503 := func(h *harness) {
		h.sim.InjectStatus(h.tenants[0].id, mdesim.APIOffboard, 503, "ServiceUnavailable", "down", 1, 0)
	}
	return []crashCase{
		{name: "before-calling", kills: onNATS(ledgerWrite("calling"))},
		{name: "calling-not-journal", kills: onNATS(journalReserve)},
		{name: "journal-not-call", kills: onNATS(after(journalReserve))},
		{name: "during-call", kills: onCall(offboardCall)},
		{name: "during-call-new-name", kills: onCall(offboardCall), newName: true},
		{name: "during-call-beside", kills: onCall(offboardCall), beside: true},
		{name: "answer-not-result", kills: onNATS(resultPub)},
		{name: "result-not-ledger", kills: onNATS(ledgerWrite("done"))},
		{name: "result-not-ack", kills: onNATS(ackPub)},
		{name: "ack-not-delete", kills: onNATS(deletePub)},
		{name: "backoff", inject: inject503,
			kills: []crashPoint{{call: func(c mdesim.Call) bool { return c.API == mdesim.APIOffboard && c.Status == 503 }, delay: 30 * time.Millisecond}}},
		{name: "during-look-after-restart", kills: []crashPoint{{call: offboardCall}, {call: listActions}}},
		{name: "by-name-lookup", byName: true, kills: onCall(func(c mdesim.Call) bool { return c.API == mdesim.APIMachines })},
		{name: "by-name-claim", byName: true, kills: onNATS(after(ledgerWrite("claimed")))},
		{name: "by-name-during-call", byName: true, kills: onCall(offboardCall)},
		{name: "by-name-result-not-ledger", byName: true, kills: onNATS(ledgerWrite("done"))},
		{name: "budget-wait", extra: "    guards:\n      budget: \"1/2s\"\n", kills: onNATS(after(ackPub))},
		{name: "budget-during-call", extra: "    guards:\n      budget: \"10/1h\"\n", kills: onCall(offboardCall)},
		{name: "tracking-event", extra: trackingYAML, tracked: true, kills: onNATS(actionPub)},
		{name: "tracking-after-event", extra: trackingYAML, tracked: true, kills: onNATS(after(actionPub))},
		{name: "tracking-state", extra: trackingYAML, tracked: true, kills: onNATS(trackWrite)},
		{name: "tracking-look", extra: trackingYAML, tracked: true, kills: onCall(func(c mdesim.Call) bool {
			return c.API == mdesim.APIMachineActions && strings.Contains(c.Path, "machineactions/")
		})},
		{name: "failed-result-not-ledger", outcome: "failed", code: "api_rejected",
			inject: func(h *harness) {
				h.sim.InjectStatus(h.tenants[0].id, mdesim.APIOffboard, 400, "BadRequest", "no", 100, 0)
			}, kills: onNATS(ledgerWrite("done"))},
		{name: "failed-dead-not-ack", outcome: "failed", code: "api_rejected",
			inject: func(h *harness) {
				h.sim.InjectStatus(h.tenants[0].id, mdesim.APIOffboard, 400, "BadRequest", "no", 100, 0)
			}, kills: onNATS(after(deadPub))},
		{name: "refused-result-not-ledger", outcome: "consistent",
			inject: func(h *harness) {
				// The first call refused, the others accepted: the refused
				// request is called again after the kill, and accepted.
				h.sim.InjectStatus(h.tenants[0].id, mdesim.APIOffboard, 400, "BadRequest", "no", 1, 0)
			}, kills: onNATS(func(s string, _, d []byte) (bool, bool) {
				k, _ := ledgerWrite("done")(s, nil, d)
				return k && bytes.Contains(d, []byte(`api_rejected`)), false
			})},
		{name: "refused-result-ledger-lost", outcome: "consistent",
			inject: func(h *harness) {
				h.sim.InjectStatus(h.tenants[0].id, mdesim.APIOffboard, 400, "BadRequest", "no", 1, 0)
			}, kills: []crashPoint{{
				// The ledger's final entry lost (its stream's leader gone
				// a moment), the result stored; no kill.
				drop: func(s string, _, d []byte) bool {
					k, _ := ledgerWrite("done")(s, nil, d)
					return k && bytes.Contains(d, []byte(`api_rejected`))
				},
			}}},
		{name: "result-without-ledger", kills: []crashPoint{{
			drop: func(s string, _, d []byte) bool { k, _ := ledgerWrite("done")(s, nil, d); return k },
			nats: after(resultPub),
		}}},
		{name: "throttle-pause", inject: func(h *harness) {
			h.sim.InjectStatus(h.tenants[0].id, mdesim.APIOffboard, 429, "TooManyRequests", "slow", 1, 2*time.Second)
		}, kills: onNATS(after(journalPause))},
	}
}

const trackingYAML = "    tracking:\n      enabled: true\n      firstCheck: 200ms\n      maxInterval: 1s\n"

// TestCrashAtAStep kills a worker process (SIGKILL) at one step of a
// request's way, picked at random (CRASH_SEED sets the seed; CRASH_CASE
// names cases, comma-separated, or "all"), restarts it, and checks that
// every request has exactly one result, consistent with what the
// simulator holds: one action per device, no window exceeded, no dead
// letter for a request that succeeded, none left waiting in the stream.
// A NATS proxy between the worker and the server kills it exactly
// between two of its messages; the simulator kills it during an API call.
func TestCrashAtAStep(t *testing.T) {
	cases := crashCases()
	var run []crashCase
	switch names := os.Getenv("CRASH_CASE"); names {
	case "all":
		run = cases
	case "":
		seed := time.Now().UnixNano()
		if s := os.Getenv("CRASH_SEED"); s != "" {
			var err error
			if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
				t.Fatalf("CRASH_SEED=%q: %v", s, err)
			}
		}
		c := cases[rand.New(rand.NewPCG(uint64(seed), 0)).IntN(len(cases))]
		t.Logf("CRASH_SEED=%d: case %s", seed, c.name)
		run = []crashCase{c}
	default:
		for _, c := range cases {
			if strings.Contains(","+names+",", ","+c.name+",") {
				run = append(run, c)
			}
		}
	}
	for _, c := range run {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runCrash(t, c)
		})
	}
}

func runCrash(t *testing.T, c crashCase) {
	const n = 4
	var px *natsProxy
	var mu sync.Mutex
	var callTrigger *crashPoint
	o := options{tenants: []string{"t0"}, machines: n, latency: 20 * time.Millisecond}
	if c.tracked {
		// Pending when the worker meets it again after the kill.
		o.actionsFinishAfter = 5 * time.Second
	}
	o.onCall = func(call mdesim.Call) {
		mu.Lock()
		cp := callTrigger
		if cp == nil || !cp.call(call) {
			mu.Unlock()
			return
		}
		callTrigger = nil
		mu.Unlock()
		if cp.delay > 0 {
			go func() {
				time.Sleep(cp.delay)
				px.kill()
			}()
			return
		}
		px.kill()
	}
	h := newHarness(t, o)
	if c.extra != "" {
		h.appendTenantYAML(c.extra)
	}
	px = newNATSProxy(t, h.url)
	// Set up the streams first, so the kill is at a request's step.
	h.prepare(time.Minute)
	if c.inject != nil {
		c.inject(h)
	}
	// CRASH_LOG sets the workers' log level (info shows each request).
	args := []string{"--ack-wait", "3s", "--log-level", cmp.Or(os.Getenv("CRASH_LOG"), "warn")}
	if c.beside {
		h.startWorkerAt(h.url, append(args, "--replica-id", "crash-beside")...)
	}
	col := h.collect()
	actions := h.collectActions()
	name := "crash-a"
	for k, cp := range c.kills {
		p := h.startWorkerAt(px.url(), append(args, "--replica-id", name)...)
		fired := px.arm(p, cp.nats, cp.drop)
		if cp.call != nil {
			mu.Lock()
			callTrigger = &cp
			mu.Unlock()
		}
		h.waitStarted(p, time.Minute)
		if k == 0 {
			for i := range n {
				m := nats.NewMsg(prefix + ".request.t0")
				ref := fmt.Sprintf(`"machineId":%q`, machineID(0, i))
				if c.byName {
					ref = fmt.Sprintf(`"computerDnsName":"pc-%06d.t0.local"`, i)
				}
				m.Data = fmt.Appendf(nil, `{"requestId":"r%d",%s}`, i, ref)
				m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("t0:r%d", i))
				if _, err := h.js.PublishMsg(t.Context(), m); err != nil {
					t.Fatal(err)
				}
			}
		}
		if cp.nats == nil && cp.call == nil {
			break // no kill: the worker goes on
		}
		select {
		case <-fired:
		case <-time.After(30 * time.Second):
			t.Fatalf("kill %d never came; %d results; subjects seen: %v\n%s", k+1, col.count(), px.subjects(), h.logTail())
		}
		t.Logf("kill %d with %d results", k+1, col.count())
		if c.newName {
			name += "x"
		}
	}
	killedAt := time.Now()
	if last := c.kills[len(c.kills)-1]; last.nats != nil || last.call != nil {
		p := h.startWorkerAt(h.url, append(args, "--replica-id", name)...)
		h.waitStarted(p, time.Minute)
	}
	got := h.waitFor(col, n, 40*time.Second, func() {})
	t.Logf("%d results %v after the last kill", got, time.Since(killedAt).Round(time.Millisecond))
	var pending int
	if c.tracked {
		// The actions the results show unfinished are followed to their end.
		pending = h.pendingInResults(t)
		deadline := time.Now().Add(20 * time.Second)
		for actions.finals() < pending && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Requests still at work (a look for the action of a call cut off
	// takes a few seconds), then strays: a second answer would come within
	// an ack wait or two.
	deadline := time.Now().Add(30 * time.Second)
	for h.waiting(t) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * time.Second)
	for i := range n {
		r, ok := col.get(fmt.Sprintf("t0/r%d", i))
		switch {
		case !ok:
			t.Errorf("r%d: no result", i)
		case r.copies != 1:
			t.Errorf("r%d: %d results", i, r.copies)
		case c.outcome == "consistent":
		case c.outcome == "" && r.outcome != "created" && r.outcome != "already_pending":
			t.Errorf("r%d: outcome %s %s", i, r.outcome, r.code)
		case c.outcome != "" && (r.outcome != c.outcome || r.code != c.code):
			t.Errorf("r%d: outcome %s %s, want %s %s", i, r.outcome, r.code, c.outcome, c.code)
		}
	}
	perDevice := map[string]int{}
	for _, a := range h.sim.Actions(h.tenants[0].id) {
		perDevice[a.MachineID]++
	}
	for d, k := range perDevice {
		if k > 1 {
			t.Errorf("device %s: %d actions", d, k)
		}
	}
	dead := h.deadLetters(t)
	if c.outcome == "consistent" {
		for i := range n {
			r, _ := col.get(fmt.Sprintf("t0/r%d", i))
			acted := perDevice[machineID(0, i)] > 0
			ok := r.outcome == "created" || r.outcome == "already_pending"
			if ok != acted || ok == dead[fmt.Sprintf("r%d", i)] {
				t.Errorf("r%d: result %s %s, device has an action: %v, dead letter: %v", i, r.outcome, r.code, acted, dead[fmt.Sprintf("r%d", i)])
			}
		}
	}
	if c.outcome == "" && len(perDevice) != n {
		t.Errorf("actions for %d devices, want %d", len(perDevice), n)
	}
	for _, api := range apis {
		if k := h.sim.ThrottledCount(h.tenants[0].id, api); k > 0 {
			t.Errorf("%s: %d calls answered 429 for a full window", api, k)
		}
	}
	wantDead := uint64(0)
	if c.outcome == "failed" {
		wantDead = n
	}
	if k := h.streamMsgs(t, "MDE_OFFBOARD_DEAD"); k != wantDead && c.outcome != "consistent" {
		t.Errorf("%d dead letters, want %d", k, wantDead)
	}
	h.noneWaiting(t)
	if c.tracked {
		if f, dup := actions.finals(), actions.dups(); f < pending || dup > 0 {
			t.Errorf("action events: %d actions ended, want %d; %d repeated statuses: %v", f, pending, dup, actions.events())
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", h.logTail())
	}
}

// eachMsg calls f with every message of the stream.
func (h *harness) eachMsg(t *testing.T, stream string, f func(*jetstream.RawStreamMsg)) {
	t.Helper()
	s, err := h.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if m, err := s.GetMsg(t.Context(), seq); err == nil {
			f(m)
		}
	}
}

// deadLetters reads the request ids of the dead letters.
func (h *harness) deadLetters(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	h.eachMsg(t, "MDE_OFFBOARD_DEAD", func(m *jetstream.RawStreamMsg) {
		var r struct{ RequestID string }
		_ = json.Unmarshal(m.Data, &r)
		out[r.RequestID] = true
	})
	return out
}

// pendingInResults counts the results whose action is unfinished.
func (h *harness) pendingInResults(t *testing.T) int {
	t.Helper()
	n := 0
	h.eachMsg(t, streamResults, func(m *jetstream.RawStreamMsg) {
		if !strings.HasPrefix(m.Subject, prefix+".result.") {
			return
		}
		var r struct {
			MachineAction struct{ Status string }
		}
		_ = json.Unmarshal(m.Data, &r)
		if r.MachineAction.Status == "Pending" || r.MachineAction.Status == "InProgress" {
			n++
		}
	})
	return n
}

// consumerInfos reads the infos of the tenant's two consumers.
func (h *harness) consumerInfos(t *testing.T) []*jetstream.ConsumerInfo {
	t.Helper()
	s, err := h.js.Stream(t.Context(), streamRequests)
	if err != nil {
		t.Fatal(err)
	}
	var infos []*jetstream.ConsumerInfo
	for _, name := range []string{"tenant-t0", "bulk-t0"} {
		cons, err := s.Consumer(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	return infos
}

// waiting is how many requests the tenant's consumers have not seen acked.
func (h *harness) waiting(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	for _, info := range h.consumerInfos(t) {
		n += info.NumPending + uint64(info.NumAckPending)
	}
	return n
}

// noneWaiting checks that no request waits in the tenant's consumers: every
// request left in the stream is acked (one killed between its ack and its
// delete stays there until the sweep).
func (h *harness) noneWaiting(t *testing.T) {
	t.Helper()
	for _, info := range h.consumerInfos(t) {
		if info.NumPending > 0 || info.NumAckPending > 0 {
			t.Errorf("consumer %s: %d requests pending, %d waiting for an ack", info.Name, info.NumPending, info.NumAckPending)
		}
	}
}

// actionEvents reads the action subject.
type actionEvents struct {
	mu   sync.Mutex
	seen map[string][]string // by action id: statuses, final ones marked
}

func (h *harness) collectActions() *actionEvents {
	h.tb.Helper()
	a := &actionEvents{seen: map[string][]string{}}
	cons, err := h.js.OrderedConsumer(h.tb.Context(), streamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + ".action.>"},
	})
	if err != nil {
		h.tb.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev struct {
			ActionID, Status string
			Final            bool
		}
		_ = json.Unmarshal(m.Data(), &ev)
		s := ev.Status
		if ev.Final {
			s += "(final)"
		}
		a.mu.Lock()
		a.seen[ev.ActionID] = append(a.seen[ev.ActionID], s)
		a.mu.Unlock()
	})
	if err != nil {
		h.tb.Fatal(err)
	}
	h.tb.Cleanup(cc.Stop)
	return a
}

func (a *actionEvents) finals() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ss := range a.seen {
		for _, s := range ss {
			if strings.HasSuffix(s, "(final)") {
				n++
				break
			}
		}
	}
	return n
}

func (a *actionEvents) dups() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ss := range a.seen {
		seen := map[string]bool{}
		for _, s := range ss {
			if seen[s] {
				n++
			}
			seen[s] = true
		}
	}
	return n
}

func (a *actionEvents) events() map[string][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.seen)
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func (h *harness) streamMsgs(t *testing.T, name string) uint64 {
	s, err := h.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// startWorkerAt starts a worker that reaches NATS at url (a proxy): the
// last --nats-url given wins.
func (h *harness) startWorkerAt(url string, extra ...string) *proc {
	h.tb.Helper()
	return h.startWorker(append([]string{"--nats-url", url}, extra...)...)
}

// appendTenantYAML adds lines to every tenant's entry of the tenants file
// (the file has one tenant).
func (h *harness) appendTenantYAML(extra string) {
	h.tb.Helper()
	b, err := os.ReadFile(h.config)
	if err != nil {
		h.tb.Fatal(err)
	}
	if err := os.WriteFile(h.config, append(b, extra...), 0o600); err != nil {
		h.tb.Fatal(err)
	}
}
