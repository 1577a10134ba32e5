package app

import (
	"testing"
	"time"
)

// TestSharedReplicaIDDoesNotAnswerTheOthersTenants: two workers started
// with one --replica-id by mistake, the second with an older tenants file
// (contoso only). Each fabrikam request gets one result, created: the
// second finds fabrikam's consumers stale, and must not drain them while
// the first, announcing itself under the same id, serves the tenant.
// Before, it took the first's announcements for none but its own and
// answered fabrikam's requests unknown_tenant.
func TestSharedReplicaIDDoesNotAnswerTheOthersTenants(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 20, noStart: true})
	e.opts.ReplicaID = "pod-0"
	// Announcements count 3 s: on a busy machine (the race detector, other
	// packages' tests) a beat of the first can come late by more than a
	// shorter life, and the first then rightly counts as gone.
	e.opts.PresenceBeat = time.Second
	e.start()
	e.startReplica("contoso") // the same name, pod-0
	res := e.collect("mde.offboard.result.fabrikam")
	// Once the second one's view is current and holds the first's
	// announcement: a few beats.
	time.Sleep(4 * e.opts.PresenceBeat)
	e.offboardEach("fabrikam", "f-", 0, 20)
	res.wait(t, 20, 30*time.Second)
	time.Sleep(time.Second) // a second answer would come within a poll or two
	res.wantOneCreatedEach(t)
}
