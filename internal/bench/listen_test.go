package bench

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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
	for range 20 {
		if addr := workerListen(t); natstest.InOutgoingRange(addr) {
			t.Fatalf("the worker's HTTP address %s is in the outgoing connections' range", addr)
		}
	}
}
