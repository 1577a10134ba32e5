package app

import (
	"context"
	"testing"
	"time"
)

// TestSharedReplicaIDOneStoppingKeepsTheOthersTenants: two workers share
// --replica-id pod-0 by mistake, the first serving contoso and fabrikam,
// the second contoso only; a third, pod-1, serves contoso only. When the
// second stops, fabrikam's requests published then get one result each,
// created: the stopping process must not withdraw the id's announcement
// while the other process under it lives, or pod-1 finds no replica
// serving fabrikam and answers its requests unknown_tenant until the
// survivor's next beat.
func TestSharedReplicaIDOneStoppingKeepsTheOthersTenants(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 20, noStart: true})
	e.opts.ReplicaID = "pod-0"
	e.opts.PresenceBeat = 3 * time.Second // the survivor's next beat comes late enough to see the gap
	e.start()
	twin := e.startReplica("contoso") // pod-0 too
	e.opts.ReplicaID = "pod-1"
	e.startReplica("contoso")
	res := e.collect("mde.offboard.result.fabrikam")
	time.Sleep(4 * e.opts.PresenceBeat) // every view current, with each announcement in it
	if err := twin.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.offboardEach("fabrikam", "f-", 0, 20)
	res.wait(t, 20, 30*time.Second)
	time.Sleep(time.Second) // a second answer would come within a poll or two
	res.wantOneCreatedEach(t)
}
