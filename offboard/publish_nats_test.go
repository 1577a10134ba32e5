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

// Text that is not UTF-8 is refused before sending: encoding/json would
// send U+FFFD in its place, and the worker would record and pass on a
// comment, requestedBy or source other than the one given. Nothing is
// stored.
func TestPublishRefusesTextThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	js := startNATS(t, true)
	for _, r := range []offboard.Request{
		{RequestID: "u-1", MachineID: machine, Comment: "Retired \xff"},
		{RequestID: "u-2", MachineID: machine, RequestedBy: "cmdb\xc3"},
		{RequestID: "u-3", MachineID: machine, Source: "\xed\xa0\x80"},
	} {
		_, err := offboard.Publish(t.Context(), js, offboard.Subjects{}, "contoso", offboard.Normal, r)
		if !errors.Is(err, offboard.ErrInvalidRequest) || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%s: error %v, want ErrInvalidRequest saying it is not UTF-8", r.RequestID, err)
		}
	}
	st, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d requests stored, want none", n)
	}
}
