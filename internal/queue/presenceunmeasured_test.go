package queue

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestPresenceStartedAfterADeathUnmeasuredLeavesNoTenantUnworked: as
// TestPresenceStartedAfterADeathLeavesNoTenantUnworked, but the read of
// the new replica's first announcement, which measures its clock against
// the server's, fails (the server slow, NATS away a moment): its own
// announcement, which its watch brings last, measures it then. Each
// tenant the dead replica ranked first is worked by one of the two live
// ones at every look. Before, the entries the watch read before its own
// counted from their reading: the new replica left those tenants to the
// dead one for three beats, and nobody worked them.
func TestPresenceStartedAfterADeathUnmeasuredLeavesNoTenantUnworked(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithUsers(t,
		&server.User{Username: "admin", Password: "a"},
		// Its announcement read back is refused: no answer comes.
		&server.User{Username: "unread", Password: "u", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{
				Allow: []string{">"},
				Deny:  []string{"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"},
			},
		}})
	_, js := natstest.ConnectTo(t, url, nats.UserInfo("admin", "a"))
	_, unread := natstest.ConnectTo(t, url, nats.UserInfo("unread", "u"))
	startedAfterADeath(t, js, unread)
}
