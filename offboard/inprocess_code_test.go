package offboard

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The code Publish looks for is the server's "in process".
func TestInProcessCodeIsTheServers(t *testing.T) {
	if errCodeInProcess != jetstream.ErrorCode(server.JSStreamDuplicateMessageConflict) {
		t.Errorf("errCodeInProcess %d, the server's %d", errCodeInProcess, server.JSStreamDuplicateMessageConflict)
	}
}
