package queue

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestPresenceOfManyTenantsOverTheServersMaxPayload: a replica of 2000
// tenants whose names take 30 characters announces about 170 KiB of
// JSON, more than a server of the smallest max_payload the worker takes
// (128 KiB) stores. Before, its first announcement failed ("maximum
// payload exceeded") and the presence, and with it the worker, did not
// start. The announcement now goes out compressed when it does not fit:
// another replica reads its tenants, and so does offboardctl status.
func TestPresenceOfManyTenantsOverTheServersMaxPayload(t *testing.T) {
	t.Parallel()
	_, js := natstest.ConnectTo(t, natstest.StartWithMaxPayload(t, MinMaxPayload))
	tenants := make([]string, 2000)
	apps := map[string]string{}
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%04d-of-the-long-names", i)
		apps[tenants[i]] = AppDigest(fmt.Sprintf("00000000-0000-0000-0000-%012d", i), "11111111-2222-3333-4444-555555555555")
	}
	beat := 200 * time.Millisecond
	runPresenceWith(t, js, PresenceOptions{ID: "many", Tenants: tenants, Apps: apps, Beat: beat, Logger: zap.NewNop()})
	other := runPresence(t, js, "other", []string{tenants[0]}, beat, zap.NewNop())
	waitFor(t, 5*time.Second, "the other replica reads the tenants of the replica of 2000", func() bool {
		return other.Serves(tenants[1999])
	})
	if d := other.Disputed(tenants[0]); d != "" {
		t.Errorf("tenant 0 disputed: %s", d)
	}
	last, err := LastAnnounced(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := last[tenants[1999]]; !ok || len(last) != 2000 {
		t.Errorf("offboardctl status reads %d tenants announced, want 2000 with %s", len(last), tenants[1999])
	}
}
