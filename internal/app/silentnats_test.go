package app

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// blackHole forwards TCP connections to a server until it is closed off:
// from then on it drops every byte both ways and closes nothing, as a
// partition, a host lost without a word or a firewall's forgotten flow
// does.
type blackHole struct {
	lis    net.Listener
	target string
	closed atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newBlackHole(t *testing.T, target string) *blackHole {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{lis: lis, target: target}
	b.wg.Go(b.accept)
	t.Cleanup(func() {
		_ = lis.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackHole) url() string { return "nats://" + b.lis.Addr().String() }

func (b *blackHole) accept() {
	for {
		in, err := b.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", b.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, in, out)
		b.mu.Unlock()
		b.wg.Go(func() { b.pipe(out, in) })
		b.wg.Go(func() { b.pipe(in, out) })
	}
}

// pipe copies from src to dst, dropping what it reads once closed off.
func (b *blackHole) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.closed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				_ = dst.Close()
			}
			return
		}
	}
}

// TestSilentNATSConnectionIsNoticed: a connection that goes silent
// without being closed (a partition, a cluster node lost without a word)
// is noticed within a few pings: mde_offboard_nats_connected goes 0 and
// /readyz stops answering ready, so the worker looks for another server
// and the alert fires. With the client library's default ping, every two
// minutes with two unanswered allowed, that took four minutes or more.
func TestSilentNATSConnectionIsNoticed(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	server := natstest.Start(t, 1)
	hole := newBlackHole(t, server.URLs()[len("nats://"):])
	o := e.opts
	o.NATSURL = hole.url()
	o.PingInterval = 100 * time.Millisecond
	a, changes := startWatchingConn(t, o)
	t.Cleanup(func() {
		hole.closed.Store(false) // a server again, for a clean stop
		_ = a.Stop(context.Background())
	})
	hole.closed.Store(true)
	// Pings every 100 ms, two unanswered allowed: noticed within about
	// 0.3 s; 10 s leaves room for a busy machine, and none for the
	// library's default.
	timeout := time.After(10 * time.Second)
	for {
		select {
		case up := <-changes:
			if up {
				continue
			}
			if a.Ready(t.Context()) == nil {
				t.Error("ready with the connection silent")
			}
			return
		case <-timeout:
			t.Fatal("a silent NATS connection was not noticed within 10s")
		}
	}
}
