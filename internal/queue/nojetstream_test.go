package queue_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// A server without JetStream answers "no responders"; ExplainNoJetStream
// says why, and keeps the error it explains. An account without JetStream
// is answered in so many words, and that error, as any other, is left as
// it is.
func TestExplainNoJetStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		jetStream bool
		want      string
	}{
		{"server", false, "the NATS server has no JetStream"},
		{"account", true, "JetStream not enabled for account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := nats.Connect(natstest.StartWithoutJetStream(t, tc.jetStream))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			_, err = js.Stream(t.Context(), "MDE_OFFBOARD_REQUESTS")
			if err == nil {
				t.Fatal("a stream found without JetStream")
			}
			got := queue.ExplainNoJetStream(t.Context(), js, err)
			if !strings.Contains(got.Error(), tc.want) || !errors.Is(got, err) {
				t.Errorf("explained %q as %q, want it to say %q", err, got, tc.want)
			}
			other := errors.New("stream not found")
			if got := queue.ExplainNoJetStream(t.Context(), js, other); got != other { //nolint:errorlint // the very error
				t.Errorf("explained %q as %q", other, got)
			}
		})
	}
}
