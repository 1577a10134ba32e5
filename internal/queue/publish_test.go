package queue

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestWaitStoredGivesUpOnAnAnswerThatNeverComes: a store whose answer never
// comes (a publish that reached a stream leader just lost) fails after
// StepTimeout as an outage, even under a longer deadline, so its request
// is taken again soon.
func TestWaitStoredGivesUpOnAnAnswerThatNeverComes(t *testing.T) {
	t.Parallel()
	never := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	answered := func(context.Context) error { return nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- WaitStored(ctx, answered, never) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !Outage(err) {
			t.Errorf("WaitStored: %v, want a deadline counted as an outage", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WaitStored still waiting after 20s for an answer that never comes (its caller's deadline is a minute)")
	}
}

// TestSendableHeaderNameAgreesWithTheClient: the names sendableHeaderName
// lets through are those the NATS client sends, and no other: a dead
// letter carries a request's headers as they came, and one whose name the
// client refuses could never be stored.
func TestSendableHeaderNameAgreesWithTheClient(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t)
	names := []string{"X-Ref-Id", "Nats-Msg-Id", "a", "~!#$%&'*+-.^_`|", "X-Ref(id)", "X Ref", "X:Ref", "X/Ref", "X;Ref", "X\"Ref",
		"X<Ref>", "X=Ref", "X?Ref", "X@Ref", "X[Ref]", "X\\Ref", "X{Ref}", "X,Ref", "Ré", "X\tRef", "X\x7fRef"}
	for _, name := range names {
		m := nats.NewMsg("sendable.test")
		m.Header[name] = []string{"v"}
		sent := nc.PublishMsg(m) == nil
		if got := sendableHeaderName(name); got != sent {
			t.Errorf("sendableHeaderName(%q) = %t, but the client sends it: %t", name, got, sent)
		}
	}
}

// TestDeadLetterHeadersOfOtherCaseAreReplaced: a publisher's header that
// differs from one the worker writes on a dead letter only in case
// (mde-error-code) is not kept beside the worker's own: a reader that
// ignores the case of header names, as HTTP's do, may read the forged one.
func TestDeadLetterHeadersOfOtherCaseAreReplaced(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CASE", Subjects: []string{"case.>"}}); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("case.request")
	m.Header["mde-error-code"] = []string{"created"}
	m.Header["MDE-ORIGINAL-SUBJECT"] = []string{"mde.offboard.request.fabrikam"}
	m.Header["mde-error-message"] = []string{"all is well"}
	m.Header["MDE-REQUEST-SEQ"] = []string{"1"}
	m.Header["X-Ref"] = []string{"kept"}
	orig, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx, "CASE", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	dead := deadMsg("dead.case", msg, offboard.Seq{N: orig.Sequence}, offboard.CodeInvalidRequest, "not JSON")
	for name, want := range map[string]string{
		offboard.HeaderErrorCode:       offboard.CodeInvalidRequest,
		offboard.HeaderOriginalSubject: "case.request",
		offboard.HeaderErrorMessage:    "not JSON",
		offboard.HeaderRequestSeq:      strconv.FormatUint(orig.Sequence, 10),
	} {
		for k, vs := range dead.Header {
			if strings.EqualFold(k, name) && (k != name || !slices.Equal(vs, []string{want})) {
				t.Errorf("dead letter header %s: %q, want only %s: %q", k, vs, name, want)
			}
		}
	}
	if got := dead.Header.Get("X-Ref"); got != "kept" {
		t.Errorf("X-Ref = %q, want the request's own header kept", got)
	}
}
