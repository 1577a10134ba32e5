package bench

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestWorkerListensOutOfTheOutgoingRange: a worker process's HTTP port,
// found free here and listened on by the process once it has started,
// lies outside the range the kernel gives outgoing connections their
// local ports from (Linux's ip_local_port_range). Before, the kernel chose
// it from that very range: a connection made meanwhile (the other workers',
// the other packages' tests) could hold it, and the worker exited at its
// start, "address already in use".
func TestWorkerListensOutOfTheOutgoingRange(t *testing.T) {
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
	for range 20 {
		addr := workerListen(t)
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		var port int
		if _, err := fmt.Sscan(p, &port); err != nil {
			t.Fatal(err)
		}
		if port >= first && port <= last {
			t.Fatalf("the worker's HTTP port %d is in the outgoing connections' range %d-%d", port, first, last)
		}
	}
}
