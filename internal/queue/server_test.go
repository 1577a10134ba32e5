package queue_test

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// Port 0 picks a free port, as it does for net.Listen, where NATS alone
// would take its default, 4222.
func TestEmbeddedPortZeroPicksAFreePort(t *testing.T) {
	t.Parallel()
	ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if url := ns.ClientURL(); strings.HasSuffix(url, ":4222") || strings.HasSuffix(url, ":0") {
		t.Errorf("listens at %s", url)
	}
}
