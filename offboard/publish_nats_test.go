package offboard_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

var machine = strings.Repeat("a", 40)

// A request Publish refuses is told from what NATS answers: a refusal is
// ErrInvalidRequest (publishing it again will not help), a missing stream
// is jetstream.ErrNoStreamResponse and not a refusal (publishing it again
// once the worker made its streams will).
func TestPublishRefusalIsToldFromNATSErrors(t *testing.T) {
	t.Parallel()
	js := startNATS(t, false)
	good := offboard.Request{RequestID: "chg-1", MachineID: machine}
	for _, tc := range []struct {
		tenant string
		p      offboard.Priority
		r      offboard.Request
	}{
		{"Contoso", offboard.Normal, good},
		{"contoso", "urgent", good},
		{"contoso", offboard.Normal, offboard.Request{RequestID: "chg-1"}},
		{"contoso", offboard.Normal, offboard.Request{RequestID: "chg 1", MachineID: machine}},
		{"contoso", offboard.Normal, offboard.Request{RequestID: "chg-1", MachineID: machine, Tenant: "fabrikam"}},
	} {
		_, err := offboard.Publish(t.Context(), js, offboard.Subjects{}, tc.tenant, tc.p, tc.r)
		if !errors.Is(err, offboard.ErrInvalidRequest) {
			t.Errorf("tenant %q, priority %q, %+v: error %v, want ErrInvalidRequest", tc.tenant, tc.p, tc.r, err)
		}
	}
	_, err := offboard.Publish(t.Context(), js, offboard.Subjects{}, "contoso", offboard.Normal, good)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, offboard.ErrInvalidRequest) {
		t.Errorf("no stream: error %v, want jetstream.ErrNoStreamResponse and no ErrInvalidRequest", err)
	}
}

// A prefix that cannot start a subject (a wildcard, an empty token, white
// space) is refused before sending, as ErrInvalidRequest: NATS would answer
// "no response from stream", which reads as a stream not made yet, or
// "invalid subject".
func TestPublishRefusesAPrefixThatIsNoSubject(t *testing.T) {
	t.Parallel()
	js := startNATS(t, true)
	r := offboard.Request{RequestID: "chg-1", MachineID: machine}
	for _, prefix := range []string{"mde.*", "mde.>", "mde..offboard", "mde offboard", ".mde"} {
		_, err := offboard.Publish(t.Context(), js, offboard.Subjects{Prefix: prefix}, "contoso", offboard.Normal, r)
		if !errors.Is(err, offboard.ErrInvalidRequest) || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("prefix %q: error %v, want ErrInvalidRequest naming the prefix", prefix, err)
		}
	}
}
