package app

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestCutterListensOutOfTheOutgoingRange: a cutter stops listening while
// it is cut and listens again on the same port when it is joined. Its
// port lies outside the range the kernel gives outgoing connections their
// local ports from (Linux's ip_local_port_range). Before, the kernel
// chose it from that very range: while cut, any connection on the
// machine (the replica's own reconnects among them) could take it as its
// local port, and the join failed, "address already in use".
func TestCutterListensOutOfTheOutgoingRange(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip("no outgoing port range to keep out of (not Linux)")
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil {
		t.Fatalf("ip_local_port_range %q: %v", b, err)
	}
	if first < 11000 {
		t.Skipf("outgoing range %d-%d leaves too little below it", first, last)
	}
	c := newCutter(t, "127.0.0.1:1")
	_, p, err := net.SplitHostPort(c.addr)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil {
		t.Fatal(err)
	}
	if port >= first && port <= last {
		t.Errorf("the cutter's port %d is in the outgoing connections' range %d-%d", port, first, last)
	}
	c.cut()
	c.join()
}
