package natstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Silencer forwards TCP connections to a server until Silence: from then
// on it drops every byte both ways and closes nothing, as a server frozen
// (a stopped container, a paused VM), a partition or a firewall's
// forgotten flow does. A client sees its writes go out and nothing come
// back, until its pings tell it. Cut does so to the connections open
// now only, as a firewall or a NAT that forgot their flows: a connection
// made again works.
type Silencer struct {
	lis    net.Listener
	target string
	silent atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	cut    []*atomic.Bool // by connection forwarded: its bytes are dropped
	// deafAfter: once a client sends these bytes, what the server sends
	// back is dropped (DeafAfter); deaf says that it was sent.
	deafAfter atomic.Pointer[[]byte]
	deaf      atomic.Bool
}

// NewSilencer forwards to target (host:port) until the test ends.
func NewSilencer(tb testing.TB, target string) *Silencer {
	tb.Helper()
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Silencer{lis: lis, target: target}
	s.wg.Go(s.accept)
	tb.Cleanup(func() {
		_ = lis.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// URL is the URL clients connect to.
func (s *Silencer) URL() string { return "nats://" + s.lis.Addr().String() }

// Silence drops every byte from now on, both ways.
func (s *Silencer) Silence() { s.silent.Store(true) }

// Resume forwards again what Silence dropped.
func (s *Silencer) Resume() { s.silent.Store(false) }

// DeafAfter drops, from the moment a client sends pattern (a subject it
// publishes on, say) and for good, every byte the server sends back,
// while what clients send still goes through: a message the server takes
// whose answer is lost, as with a server's node lost between its write
// and its reply, or a partition that opens one way only.
func (s *Silencer) DeafAfter(pattern string) {
	b := []byte(pattern)
	s.deafAfter.Store(&b)
}

// Deaf says whether DeafAfter's pattern was sent.
func (s *Silencer) Deaf() bool { return s.deaf.Load() }

// Reopen closes every connection open now and forwards from then on, as
// a host that comes back does: the client sees its connections end, and
// reconnects at once.
func (s *Silencer) Reopen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
	s.silent.Store(false)
}

// Cut drops every byte of the connections open now, both ways; those
// made later are forwarded.
func (s *Silencer) Cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cut {
		c.Store(true)
	}
}

func (s *Silencer) accept() {
	for {
		in, err := s.lis.Accept()
		if err != nil {
			return
		}
		out, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", s.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		cut := new(atomic.Bool)
		s.mu.Lock()
		s.conns, s.cut = append(s.conns, in, out), append(s.cut, cut)
		s.mu.Unlock()
		s.wg.Go(func() { s.pipe(out, in, cut, true) })
		s.wg.Go(func() { s.pipe(in, out, cut, false) })
	}
}

// pipe copies from src to dst, dropping what it reads once silent or
// cut, or, from the server (toServer false), once deaf.
func (s *Silencer) pipe(dst, src net.Conn, cut *atomic.Bool, toServer bool) {
	buf := make([]byte, 32<<10)
	var tail []byte // the last bytes sent to the server: a pattern cut in two reads
	for {
		n, err := src.Read(buf)
		if p := s.deafAfter.Load(); toServer && n > 0 && p != nil && !s.deaf.Load() {
			seen := append(tail, buf[:n]...)
			if bytes.Contains(seen, *p) {
				s.deaf.Store(true)
			}
			tail = append([]byte(nil), seen[max(len(seen)-len(*p), 0):]...)
		}
		if n > 0 && !s.silent.Load() && !cut.Load() && (toServer || !s.deaf.Load()) {
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
