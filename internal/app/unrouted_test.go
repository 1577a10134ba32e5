package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// slowLink is a TCP proxy to a NATS server that holds every chunk, both
// ways, for its delay (zero: passes them on at once): a replica on a slow
// link to NATS.
type slowLink struct {
	ln    net.Listener
	to    string
	delay atomic.Int64
	wg    sync.WaitGroup
}

func newSlowLink(t *testing.T, to string) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	to = strings.TrimPrefix(to, "nats://")
	l := &slowLink{ln: ln, to: to}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	l.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			l.wg.Go(func() { l.pipe(out, in) })
			l.wg.Go(func() { l.pipe(in, out) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		l.wg.Wait()
	})
	return l
}

// startOnSlowLink starts a replica serving contoso alone, over a slow
// link (no delay until one is set) to a NATS server of its own, with
// machines devices per tenant, and connects the test to the server
// directly. full is every tenant of the environment.
func startOnSlowLink(t *testing.T, machines int) (e *env, c *natstest.Cluster, link *slowLink, full *config.File) {
	t.Helper()
	c = natstest.Start(t, 1)
	link = newSlowLink(t, c.URLs())
	e = setup(t, envConfig{machines: machines, noStart: true})
	full = e.opts.Tenants
	e.opts.NATSURL = link.url()
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.start()
	e.nc.Close()
	e.connect(c.URLs())
	return e, c, link, full
}

func (l *slowLink) url() string { return "nats://" + l.ln.Addr().String() }

// pipe copies src to dst, each chunk sent its delay after it was read.
func (l *slowLink) pipe(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	l.wg.Go(func() {
		defer dst.Close()
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				return
			}
		}
	})
	defer close(q)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{b: append([]byte(nil), buf[:n]...), at: time.Now().Add(time.Duration(l.delay.Load()))}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

// TestReplicaStartingWithATenantWhileItsRequestIsAnsweredUnknown: replica
// A (contoso only) answers fabrikam's requests unknown_tenant through the
// unrouted consumer, over a slow link to NATS; replica B, with fabrikam,
// starts meanwhile. B makes fabrikam's consumers, which deliver every
// request still in the stream, the one A is answering included: A found
// no consumer of fabrikam a moment before. Each request gets one result,
// and no device is offboarded whose request was answered unknown_tenant.
// Before, the request A was answering got two results, unknown_tenant and
// created, and its device was offboarded.
func TestReplicaStartingWithATenantWhileItsRequestIsAnsweredUnknown(t *testing.T) {
	t.Parallel()
	const n = 3
	e, c, link, full := startOnSlowLink(t, n) // A: contoso only, on the slow link
	res := e.collect("mde.offboard.result.>")
	link.delay.Store(int64(150 * time.Millisecond))
	e.offboardEach("fabrikam", "f-", 0, n)
	// A's first answer is stored; its ack and the request's delete take
	// A two more round trips. Each of A's steps crosses the slow link,
	// and the race detector on a busy machine slows them more: the bound
	// is generous, as nothing here measures speed.
	res.wait(t, 1, 30*time.Second)

	e.startReplicaOf(c.URLs(), full) // B: every tenant

	res.wait(t, n, 30*time.Second)
	time.Sleep(3 * time.Second) // strays
	got := res.snapshot()
	acted := map[string]int{}
	for _, a := range e.sim.Actions(e.tenants["fabrikam"].tenantID) {
		acted[a.MachineID]++
	}
	for i := range n {
		key := fmt.Sprintf("fabrikam/f-%d", i)
		machine := e.tenants["fabrikam"].machines[i].ID
		var outs []string
		for _, r := range got[key] {
			out := r.Outcome
			if r.Error != nil {
				out += "/" + r.Error.Code
			}
			outs = append(outs, out)
		}
		switch {
		case len(outs) != 1:
			t.Errorf("%s: results %v (device actions: %d), want one", key, outs, acted[machine])
		case outs[0] != offboard.OutcomeCreated && acted[machine] != 0:
			t.Errorf("%s: answered %s, but its device has %d actions", key, outs[0], acted[machine])
		case acted[machine] > 1:
			t.Errorf("%s: %d actions", key, acted[machine])
		}
		t.Logf("%s: %v", key, outs)
	}
}

// TestUnroutedAnswersOverASlowLink: a replica whose link to NATS is slower
// than its poll (250 ms each way, polls of 200 ms) answers the requests of
// an unserved tenant. Before, the unrouted consumer's pull was given up
// when the poll ended, while the server was still delivering to it: the
// requests it got were dropped, to come back after their ack wait (a
// minute), and none was answered in 20 s. On a busy machine the 150 ms
// link of TestReplicaStartingWithATenantWhileItsRequestIsAnsweredUnknown
// was slow enough for that.
func TestUnroutedAnswersOverASlowLink(t *testing.T) {
	t.Parallel()
	const n = 2
	e, _, link, _ := startOnSlowLink(t, n)
	res := e.collect("mde.offboard.result.>")
	link.delay.Store(int64(250 * time.Millisecond))
	e.offboardEach("fabrikam", "f-", 0, n)
	got := res.wait(t, n, 20*time.Second) // a bound: the ack wait is a minute
	for i := range n {
		key := fmt.Sprintf("fabrikam/f-%d", i)
		if r := got[key]; len(r) != 1 || r[0].Error == nil || r[0].Error.Code != offboard.CodeUnknownTenant {
			t.Errorf("%s: %+v, want one result, unknown_tenant", key, r)
		}
	}
}

// TestUnroutedAnswersSoonAfterNATSRestarts: a lone NATS server restarted
// keeps none of the pulls it was given, and tells nobody: the unrouted
// consumer's pull under way is given up once two of its heartbeats fail
// to come, and a request of an unserved tenant published once the server
// is back is answered within seconds. Before, the worker waited for the
// end of each pull the server no longer had, 10 s after it was made (here
// the answer came 15 s after the request); and as long for a stale
// consumer removed as its pull came, whose tenant's requests the unrouted
// consumer let go to it meanwhile, unanswered.
func TestUnroutedAnswersSoonAfterNATSRestarts(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	e := setup(t, envConfig{machines: 2, noStart: true})
	e.opts.NATSURL = c.URLs()
	e.opts.Tenants = tenantsOnly(e.opts.Tenants, "contoso")
	e.start()
	e.nc.Close()
	e.connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	res := e.collect("mde.offboard.result.>")
	// Answered through the pull made at the start, which then goes on.
	e.offboardEach("fabrikam", "f-", 0, 1)
	res.wait(t, 1, 10*time.Second)
	c.Shutdown(0)
	c.Restart(0)
	// Back: the test's own connection has JetStream answer again. On a
	// loaded machine the server recovering its streams took longer than
	// a publish waits (5 s), and the test's publish, not the worker,
	// failed.
	eventually(t, 30*time.Second, "JetStream answering after the restart", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := e.js.Stream(ctx, offboard.StreamRequests)
		return err == nil
	})
	e.offboardEach("fabrikam", "f-", 1, 2)
	published := time.Now()
	got := res.wait(t, 2, 30*time.Second)
	// About 2 s here, 15 s before; the bound leaves room for a busy machine.
	if d := time.Since(published); d > 7*time.Second {
		t.Errorf("answered %v after it was published once NATS was back, want within 7s", d.Round(100*time.Millisecond))
	}
	if r := got["fabrikam/f-1"]; len(r) != 1 || r[0].Error == nil || r[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("fabrikam/f-1: %+v, want one result, unknown_tenant", r)
	}
}

// TestIDAnsweredUnknownIsFreeOnceTheTenantIsServed: a request id answered
// unknown_tenant (recorded in the ledger for that message alone) does not
// answer another message of the id once a replica serves the tenant: that
// one is worked on.
func TestIDAnsweredUnknownIsFreeOnceTheTenantIsServed(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso", "fabrikam"}, noStart: true})
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.start() // contoso only
	e.opts.Tenants = full
	res := e.collect("mde.offboard.result.fabrikam")
	body := map[string]any{"requestId": "f-0", "machineId": e.tenants["fabrikam"].machines[0].ID}
	e.publish("mde.offboard.request.fabrikam", body, "")
	first := res.wait(t, 1, 10*time.Second)["fabrikam/f-0"]
	if len(first) != 1 || first[0].Error == nil || first[0].Error.Code != offboard.CodeUnknownTenant {
		t.Fatalf("first message: %+v, want unknown_tenant", first)
	}
	e.startReplica("fabrikam")
	e.publish("mde.offboard.request.fabrikam", body, "")
	eventually(t, 20*time.Second, "the second message answered", func() bool { return len(res.snapshot()["fabrikam/f-0"]) >= 2 })
	time.Sleep(time.Second) // strays
	got := res.snapshot()["fabrikam/f-0"]
	if len(got) != 2 || got[1].Outcome != offboard.OutcomeCreated || got[1].RequestSeq == first[0].RequestSeq {
		t.Errorf("results %+v, want unknown_tenant, then created for the second message", got)
	}
	e.oneActionEach("fabrikam", 1)
}
