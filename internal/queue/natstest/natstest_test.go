package natstest

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterTakesStreamsAtOnce: once Start returns, a stream with three
// replicas can be placed, the first thing a worker does on a new cluster.
// Before, Start waited for a meta leader only, and the stream was now and
// then refused: "no suitable peers for placement".
func TestClusterTakesStreamsAtOnce(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			c := Start(t, 3)
			_, js := c.Connect(t)
			if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3}); err != nil {
				t.Fatalf("a stream with three replicas as the cluster is up: %v", err)
			}
		})
	}
}

// TestConnectToWaitsForASlowServer: a server that greets its client
// late, as one sharing a busy machine with other packages' tests does, is
// waited for. The client library's own limit, 2 s for the greeting, ended
// such a test with "read tcp ...: i/o timeout" before it began.
func TestConnectToWaitsForASlowServer(t *testing.T) {
	t.Parallel()
	c := Start(t, 1)
	target := strings.TrimPrefix(c.URLs(), "nats://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				time.Sleep(2500 * time.Millisecond) // the server's greeting, late
				srv, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer srv.Close()
				go func() { _, _ = io.Copy(srv, conn) }()
				_, _ = io.Copy(conn, srv)
			}()
		}
	}()
	nc, _ := ConnectTo(t, "nats://"+ln.Addr().String())
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}
