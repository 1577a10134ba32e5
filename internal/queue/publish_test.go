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

// TestDeadLetterOfARequestWithHeadersNearTheLimit: a request whose
// headers come near the server's limit for them (65,535 bytes, which the
// request stream's message size leaves room for) still has its dead
// letter stored: the worker's own headers would take the copy over the
// limit, the server would refuse it, and the request, never acked, would
// come back for ever. The request's longest headers give way, and the
// dead letter counts them.
func TestDeadLetterOfARequestWithHeadersNearTheLimit(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ctx := t.Context()
	for _, name := range []string{"NEAR", "NEARDEAD"} {
		subject := strings.ToLower(name) + ".>"
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg("near.request")
	m.Data = []byte(`{}`)
	for i := range 13 {
		m.Header.Set("X-Pad-"+strconv.Itoa(i), strings.Repeat("p", 4990))
	}
	m.Header.Set("X-Ref", strings.Repeat("q", 400))
	m.Header.Set(jetstream.MsgIDHeader, "contoso:near-1")
	orig, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx, "NEAR", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	message := strings.Repeat("é", offboard.MaxMessageLength)
	if err := PublishDead(ctx, js, "neardead.x", msg, offboard.Seq{N: orig.Sequence}, offboard.CodeInvalidRequest, message); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	s, err := js.Stream(ctx, "NEARDEAD")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := dead.Header
	if h.Get(offboard.HeaderErrorCode) != offboard.CodeInvalidRequest || h.Get(offboard.HeaderErrorMessage) != message ||
		h.Get(offboard.HeaderOriginalSubject) != "near.request" || h.Get(jetstream.MsgIDHeader) != "contoso:near-1" ||
		h.Get("X-Ref") == "" || h.Get(offboard.HeaderDroppedHeaders) == "" || h.Get(offboard.HeaderDroppedHeaders) == "0" {
		t.Errorf("dead letter headers: code %q, subject %q, id %q, X-Ref kept %t, dropped %q", h.Get(offboard.HeaderErrorCode),
			h.Get(offboard.HeaderOriginalSubject), h.Get(jetstream.MsgIDHeader), h.Get("X-Ref") != "", h.Get(offboard.HeaderDroppedHeaders))
	}
}
