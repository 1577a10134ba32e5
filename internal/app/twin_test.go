package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
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
	e.opts.PresenceBeat = 300 * time.Millisecond
	e.start()
	e.startReplica("contoso") // the same name, pod-0
	res := e.collect("mde.offboard.result.fabrikam")
	// Once the second one's view is current and holds the first's
	// announcement: a few beats.
	time.Sleep(4 * e.opts.PresenceBeat)
	e.offboardEach("fabrikam", "f-", 0, 20)
	res.wait(t, 20, 30*time.Second)
	time.Sleep(time.Second) // a second answer would come within a poll or two
	for key, rs := range res.snapshot() {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			var outs []string
			for _, r := range rs {
				code := ""
				if r.Error != nil {
					code = "/" + r.Error.Code
				}
				outs = append(outs, r.Outcome+code)
			}
			t.Errorf("%s: results %v, want one created", key, outs)
		}
	}
}
