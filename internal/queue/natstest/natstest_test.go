package natstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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

// TestRestartedServerCatchesUpBeforeItsShutdown: a cluster's server
// restarted with an empty store (a node that lost its disk) is shut down
// at the test's end only once it holds again the streams placed on it.
// Before, it was shut down while it still read the cluster's state and
// made its streams: a stream's store made so was never closed, and
// goleak failed the package after TestEnsureNeverLowersTheReplicas,
// though every test passed.
func TestRestartedServerCatchesUpBeforeItsShutdown(t *testing.T) {
	t.Parallel()
	c := Start(t, 3)
	_, js := c.Connect(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	c.Shutdown(2)
	c.Wipe(2)
	c.Restart(2)
	c.shutdownAll()
	if _, err := os.Stat(filepath.Join(c.opts[2].StoreDir, "jetstream", "$G", "streams", "R3")); err != nil {
		t.Errorf("the server restarted with an empty store was shut down without its copy of the stream: %v", err)
	}
}

// TestStartSeesARoutePortTaken: a cluster's server whose route port
// another socket took after it was found free does not start, and says
// which port, so that Start tries again on other ports. Before, only the
// client port was looked at, and the cluster's start failed.
func TestStartSeesARoutePortTaken(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	c.ready = 2 * time.Second
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", c.opts[0].Cluster.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = c.startAll()
	c.shutdownAll()
	if !errors.Is(err, errPortTaken) || !strings.Contains(err.Error(), fmt.Sprint(c.opts[0].Cluster.Port)) {
		t.Fatalf("start with its route port taken: %v; want errPortTaken naming port %d", err, c.opts[0].Cluster.Port)
	}
}

// TestServersListenOutOfTheOutgoingRange: a cluster's ports lie outside
// the range of the local ports of outgoing connections. Before, the
// kernel chose them from that very range, and a test's client connection
// could hold the port when its server came to listen there: "server n1:
// not ready after 30s".
func TestServersListenOutOfTheOutgoingRange(t *testing.T) {
	t.Parallel()
	if lo, _ := listenRange(); lo == 0 {
		t.Skip("no outgoing port range to keep out of (not Linux)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if out := conn.LocalAddr().String(); !InOutgoingRange(out) {
		t.Fatalf("an outgoing connection's address %s is not in the outgoing range", out)
	}
	for _, port := range freePorts(t, 50) {
		if addr := fmt.Sprintf("127.0.0.1:%d", port); InOutgoingRange(addr) {
			t.Errorf("port %d is in the range outgoing connections take theirs from", port)
		}
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
