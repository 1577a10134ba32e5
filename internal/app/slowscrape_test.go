//go:build unix

package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStopCutsASlowScrapeShort: a scraper that stops reading in the
// middle of a large /metrics answer (a Prometheus stuck, a congested
// link) when the worker is stopped. The stop cuts the answer short and
// closes the connection after its few seconds for the HTTP server; it is
// no failed stop. Before, Stop answered "HTTP server: context deadline
// exceeded" (the worker exited 1 after a SIGTERM that lost nothing) and
// the connection stayed open, its handler blocked in its write.
func TestStopCutsASlowScrapeShort(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}})
	// Some megabytes of series, as thousands of tenants give: more than
	// the socket buffers hold.
	big := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_big", Help: "many series"}, []string{"series"})
	for i := range 40000 {
		big.WithLabelValues(fmt.Sprintf("series-%06d-%s", i, strings.Repeat("x", 64))).Set(1)
	}
	e.app.reg.MustRegister(big)
	// A small receive buffer the client never drains.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", e.app.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: worker\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The answer has begun; the rest waits for a reader that never reads.
	r := bufio.NewReaderSize(conn, 16)
	if status, err := r.ReadString('\n'); err != nil || !strings.Contains(status, "200") {
		t.Fatalf("status line %q, %v", status, err)
	}
	if err := e.app.Stop(context.Background()); err != nil {
		t.Errorf("Stop with a scrape left unread: %v, want nil", err)
	}
	// The connection is closed: what the server had sent is read, then
	// the end, well before the server's 1-minute write timeout.
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil && !isConnReset(err) {
		t.Errorf("reading the rest of the cut answer: %v, want the connection closed", err)
	}
}

// isConnReset says whether err is the peer's reset of the connection:
// a server that closes a socket it had unread data for resets it.
func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}
