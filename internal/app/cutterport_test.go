package app

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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
	c := newCutter(t, "127.0.0.1:1")
	if natstest.InOutgoingRange(c.addr) {
		t.Errorf("the cutter's address %s is in the outgoing connections' range", c.addr)
	}
	c.cut()
	c.join()
}
