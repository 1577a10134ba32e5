package queue

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestScanOfTrackedActionsLosesNoStateToAReconnect: a scan whose
// connection to NATS is lost and made again mid-scan does not end as if
// it had read every followed action. Its consumer acknowledges nothing,
// so a state the server sent and the worker never received (on the wire
// when the connection broke, or dropped by the client when its pull,
// asked again at the reconnect, overflowed the states still waiting to
// be read) is not sent again: with a pull's answer lost on the wire, the
// scan read 2,499 of 3,000 states, or 1,000 of 1,020 (the last ones
// lost), and ended without an error; the tracker took it for whole, and
// looked at none of the actions missed until a later scan, five minutes
// on when it follows fewer than 2,000. It now ends with an error (the
// tracker scans again 10 s later).
func TestScanOfTrackedActionsLosesNoStateToAReconnect(t *testing.T) {
	t.Parallel()
	// The states lost: among others, or the last ones.
	for _, n := range []int{3 * trackScanBatch, trackScanBatch + 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			scanAcrossAReconnect(t, n)
		})
	}
}

// scanAcrossAReconnect scans n followed actions across a reconnect.
func scanAcrossAReconnect(t *testing.T, n int) {
	c := natstest.Start(t, 1)
	_, admin := c.Connect(t)
	ctx := t.Context()
	if _, err := Ensure(ctx, admin, Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	storeTracked(t, admin, "contoso", n)
	link := newCuttableLink(t, strings.TrimPrefix(c.URLs(), "nats://"))
	nc, js := natstest.ConnectTo(t, "nats://"+link.addr(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	l, err := NewLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := admin.Stream(ctx, "KV_"+offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	sent := func() uint64 {
		var most uint64
		for ci := range stream.ListConsumers(ctx).Info() {
			most = max(most, ci.Delivered.Consumer)
		}
		return most
	}
	// The tracker holds the first state until the link holds what the
	// server sends; the pull the scan asks again, half-way through the
	// first batch, is then answered into the link, and lost with it.
	hold := make(chan struct{})
	before := nc.Stats().InMsgs
	read := map[string]int{}
	done := make(chan error, 1)
	go func() {
		done <- l.ScanTracked(ctx, "contoso", func(state []byte) error {
			if len(read) == 0 {
				select {
				case <-hold:
				case <-ctx.Done():
				}
			}
			read[string(state)]++
			return nil
		})
	}()
	deadline := time.Now().Add(20 * time.Second)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The consumer's creation answered, and the first batch.
	waitFor("the first batch received", func() bool { return nc.Stats().InMsgs >= before+1+trackScanBatch })
	link.hold(true)
	close(hold)
	waitFor("more sent", func() bool { return sent() > trackScanBatch })
	link.cut()
	link.hold(false)
	select {
	case err = <-done:
	case <-time.After(4 * trackScanStall):
		t.Fatalf("the scan still runs %v after the reconnect", 4*trackScanStall)
	}
	twice := 0
	for _, k := range read {
		if k > 1 {
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%d states read twice", twice)
	}
	if err == nil && len(read) != n {
		t.Errorf("the scan read %d of %d states and ended without an error", len(read), n)
	}
	if err != nil {
		t.Logf("the scan ended with: %v (%d of %d states read)", err, len(read), n)
	}
	// The next scan reads them all.
	all := 0
	if err := l.ScanTracked(ctx, "contoso", func([]byte) error { all++; return nil }); err != nil || all != n {
		t.Errorf("the next scan: %d of %d states, %v", all, n, err)
	}
}

// storeTracked stores n followed actions' states of tenant.
func storeTracked(t *testing.T, js jetstream.JetStream, tenant string, n int) {
	t.Helper()
	for i := range n {
		key := trackKey(tenant, fmt.Sprintf("act-%06d", i))
		if _, err := js.PublishAsync("$KV."+offboard.BucketLedger+"."+key, fmt.Appendf(nil, `{"actionId":"act-%06d"}`, i)); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 { // within the client's outstanding stores
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("the states not stored within a minute")
			}
		}
	}
}

// cuttableLink forwards TCP connections to a NATS server; cut breaks
// the ones open, as a network fault does, and the client connects again
// through it.
type cuttableLink struct {
	ln    net.Listener
	held  atomic.Bool // what the server sends is not passed on
	mu    sync.Mutex
	conns []net.Conn
	// upHeld: what the client sends is kept, in order, until holdUp(false);
	// kept is it, and pulls the pulls among it.
	upHeld bool
	kept   []keptBytes
	pulls  int
}

// keptBytes is what a client sent, kept for its server.
type keptBytes struct {
	srv net.Conn
	b   []byte
}

func newCuttableLink(t *testing.T, target string) *cuttableLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &cuttableLink{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); k.cut() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			k.mu.Lock()
			k.conns = append(k.conns, client, srv)
			k.mu.Unlock()
			go func() { k.passUp(srv, client); _ = srv.Close() }()
			go func() { k.pass(client, srv); _ = client.Close() }()
		}
	}()
	return k
}

// pass copies what the server sends to the client, but while held.
func (k *cuttableLink) pass(client, srv net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := srv.Read(buf)
		for k.held.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// passUp copies what the client sends to the server, but keeps it while
// held up.
func (k *cuttableLink) passUp(srv, client net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			k.mu.Lock()
			var werr error
			if k.upHeld {
				k.kept = append(k.kept, keptBytes{srv, bytes.Clone(buf[:n])})
				k.pulls += bytes.Count(buf[:n], []byte(".CONSUMER.MSG.NEXT."))
			} else {
				_, werr = srv.Write(buf[:n])
			}
			k.mu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// holdUp keeps what clients send from their server, as a server too
// busy to read it does, or passes what it kept on and passes again.
func (k *cuttableLink) holdUp(on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !on {
		for _, b := range k.kept {
			_, _ = b.srv.Write(b.b)
		}
		k.kept = nil
	}
	k.upHeld, k.pulls = on, 0
}

// pullsKept is how many pulls the link keeps from the server.
func (k *cuttableLink) pullsKept() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pulls
}

// hold stops passing on what the server sends, or passes it again.
func (k *cuttableLink) hold(on bool) { k.held.Store(on) }

func (k *cuttableLink) addr() string { return k.ln.Addr().String() }

func (k *cuttableLink) cut() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.conns {
		_ = c.Close()
	}
	k.conns = nil
}
