package app

import (
	"testing"
	"time"
)

// TestCallOfADeadProcessIsTakenUpOnceItsAnnouncementLapses: a request's
// "calling" entry was written a moment ago by a process that died
// (killed mid-call; a worker with its embedded NATS server restarted
// after it), whose last announcement still counts as the request comes
// back. The process does not answer, so its call counts as under way for
// as long as its announcement does (3 s here). The request must be taken
// up soon after that, not an ack wait later (20 s here, a minute by
// default). Before, it was left for the whole ack wait: a worker
// restarted after a crash answered the requests whose calls were under
// way at the crash about 75 s after its start with the defaults.
func TestCallOfADeadProcessIsTakenUpOnceItsAnnouncementLapses(t *testing.T) {
	t.Parallel()
	const ackWait = 20 * time.Second
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: ackWait})
	e.stop()
	js, _, stop := callingLeft(t, e, time.Now().Add(-2*time.Second), "dead-process")
	announceReplica(t, js, "dead-replica", "dead-process")
	stop()
	e.opts.PresenceBeat = time.Second // announcements count 3 s
	started := time.Now()
	e.start()
	c := e.collect("mde.offboard.result.contoso")
	c.wait(t, 1, 2*ackWait)
	if took := time.Since(started); took > ackWait/2 {
		t.Errorf("r1 answered %v after the start, want well within the ack wait of %v: its writer's announcement lapsed after 3 s",
			took.Round(100*time.Millisecond), ackWait)
	}
	wantCalledOnce(t, e, c, "once the dead process's announcement had lapsed")
}
