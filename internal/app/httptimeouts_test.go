package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHTTPClosesIdleConnections: a kept-alive connection that asks
// nothing more is closed after the idle timeout, so that clients opening
// many and keeping them idle cannot hold the worker's goroutines and
// buffers.
func TestHTTPClosesIdleConnections(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	e.opts.HTTP = HTTPTimeouts{Idle: idle}
	e.start()

	conn, err := net.Dial("tcp", e.app.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server's idle time starts once it has written its answer, after
	// the request was sent and perhaps well before the answer is read
	// here: the close comes an idle timeout after the request at least.
	sent := time.Now()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: worker\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("/healthz: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}

	idleFrom := time.Now()
	if err := conn.SetReadDeadline(time.Now().Add(20 * idle)); err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadByte()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("an idle connection still open after %v, with an idle timeout of %v", time.Since(idleFrom), idle)
	case err == nil:
		t.Fatal("the server sent something on an idle connection")
	}
	if d := time.Since(sent); d < idle {
		t.Errorf("the idle connection was closed %v after the request, before the idle timeout %v", d, idle)
	}
}

// TestHTTPProfileOutlastsTheRequestTimeout: a CPU profile of N seconds
// runs its N seconds, whatever the request timeout, which bounds other
// answers. The request timeout is half the profile: the answer must be
// written within it once the profile is over, which on a loaded machine
// (the race detector, the suite's other packages) took more than 300 ms.
func TestHTTPProfileOutlastsTheRequestTimeout(t *testing.T) {
	t.Parallel()
	const request = time.Second
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	e.opts.Profiling = true
	e.opts.HTTP = HTTPTimeouts{Request: request, Idle: request}
	e.start()

	start := time.Now()
	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/debug/pprof/profile?seconds=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("profile: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("profile: %d bytes, not a gzipped profile", len(b))
	}
	if took < 2*time.Second {
		t.Errorf("a profile of 2s answered after %v: cut short by the request timeout %v", took, request)
	}
	// Other answers on the same server work as before.
	mresp, err := http.Get("http://" + e.app.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	if _, err := io.ReadAll(mresp.Body); err != nil || mresp.StatusCode != http.StatusOK {
		t.Errorf("/metrics: %d, %v", mresp.StatusCode, err)
	}
}

// bigMetrics registers some 4 MB of series on reg, as thousands of
// tenants make.
func bigMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_big_series", Help: "many series"}, []string{"tenant", "api"})
	reg.MustRegister(g)
	pad := strings.Repeat("x", 800)
	for i := range 5000 {
		g.WithLabelValues(fmt.Sprintf("tenant-%06d-%s", i, pad), "offboard").Set(float64(i))
	}
}

// TestHTTPCutsASlowReader: a client that reads /metrics far slower than
// the request timeout allows is cut off then, rather than holding its
// goroutine and the answer's buffers for as long as it likes; a client
// that reads it at once gets the whole large answer. The request timeout
// bounds the whole answer, its gathering and gzipping included: 2 s for
// the 4 MB scrape under -race on a quiet machine, 10 s at load 8 (cut
// short then by a timeout of 8 s), so twice that.
func TestHTTPCutsASlowReader(t *testing.T) {
	t.Parallel()
	const request = 20 * time.Second
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	bigMetrics(t, e.reg)
	e.opts.HTTP = HTTPTimeouts{Request: request}
	e.start()
	url := "http://" + e.app.HTTPAddr() + "/metrics"

	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	t.Logf("/metrics: %d bytes in %v", len(b), time.Since(start))
	if err != nil || resp.StatusCode != http.StatusOK || len(b) < 4<<20 {
		t.Fatalf("/metrics read at once: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}

	conn, err := net.Dial("tcp", e.app.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: worker\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	idle := request + 5*time.Second
	time.Sleep(idle) // the client reads nothing meanwhile
	// Then it asks again on the same connection and reads. Left open,
	// the connection goes on carrying the answer through the small
	// window until the read's deadline. Cut off, the server's side is
	// gone: the request just written is refused (a reset), or the
	// connection ends.
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: worker\r\n\r\n"); err != nil {
		return // refused at once: cut off
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a client that read nothing for %v still had its connection %v later (%d bytes read since): want it cut off after %v", idle, 5*time.Second, n, request)
	}
}
