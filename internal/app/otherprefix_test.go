package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReplicaOfAnotherSubjectPrefixIsRefused: a second worker started on
// the same NATS with another --subject-prefix (a replica's flags out of
// step in a rolling update) stops at start, naming the prefix the
// streams take, and leaves the streams as they were: the first one's
// requests are still stored and answered. Before, it set every stream to
// its own subjects: the requests waiting under the first one's prefix
// were never answered, its publishers' requests were refused, and the
// first worker, whose journal entries and results no stream took any
// more, stalled without a word. With --no-setup it started, and pulled
// nothing.
func TestReplicaOfAnotherSubjectPrefixIsRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 4, limits: `["1/1m"]`})
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c-", 0, 2) // one now, one after the minute
	res.wait(t, 1, 20*time.Second)

	o := e.opts
	o.NATSURL = e.app.NATSURL()
	o.SubjectPrefix = "other.offboard"
	for _, noSetup := range []bool{true, false} {
		o.NoSetup = noSetup
		o.Registry = prometheus.NewRegistry()
		b, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		err = b.Start(t.Context())
		_ = b.Stop(context.Background())
		if err == nil || !strings.Contains(err.Error(), "mde.offboard.request.>") || !strings.Contains(err.Error(), "--subject-prefix") {
			t.Errorf("start with another prefix (no setup: %v): %v, want a refusal naming the stream's subjects and the flag", noSetup, err)
		}
	}
	// The first worker's publishers and results are as they were.
	e.offboardEach("fabrikam", "f-", 0, 1)
	res.wait(t, 2, 20*time.Second)
}
