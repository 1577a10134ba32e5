package campaign

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestControlBucketMadeWithTheStreamsReplicas: on a three-node cluster
// whose workers run with --stream-replicas 3, a control bucket made again
// by offboardctl (a campaign run or cancel, the bucket deleted) keeps as
// many copies as the request stream: made with one, the cancel marks and
// pauses lived on one node until a worker's setup ran again, and that
// node losing its disk lost a campaign's cancel.
func TestControlBucketMadeWithTheStreamsReplicas(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 3)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	if _, err := ControlBucket(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), "KV_"+offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("control bucket made with %d replicas, the request stream has 3", r)
	}
}
