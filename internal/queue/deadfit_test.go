package queue

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// deadOf publishes m to a stream of its own, reads it back, and stores
// its dead letter with message, returning the dead letter read back.
func deadOf(t *testing.T, name string, m *nats.Msg, message string) (*jetstream.RawStreamMsg, error) {
	t.Helper()
	_, js := natstest.Connect(t)
	ctx := t.Context()
	for _, n := range []string{name, name + "DEAD"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: n, Subjects: []string{strings.ToLower(n) + ".>"}}); err != nil {
			t.Fatal(err)
		}
	}
	m.Subject = strings.ToLower(name) + ".request"
	orig, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The dead letter as PublishDead makes it, given the test's time
	// rather than a step's 2 s: under the race detector, the server in
	// this process reads tens of thousands of header bytes slowly.
	if _, err := js.PublishMsg(ctx, deadMsg(strings.ToLower(name)+"dead.x", msg, offboard.Seq{N: orig.Sequence}, offboard.CodeInvalidRequest, message)); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, name+"DEAD")
	if err != nil {
		t.Fatal(err)
	}
	return s.GetMsg(ctx, 1)
}

// TestDeadLetterOfARequestWithAHugeMessageID: a request whose own message
// id takes nearly all the room the server leaves for headers still has
// its dead letter stored. The message id is the one header of the
// request's that was never dropped, so the worker's headers took the copy
// over the limit, and the request came back for ever.
func TestDeadLetterOfARequestWithAHugeMessageID(t *testing.T) {
	t.Parallel()
	m := nats.NewMsg("x")
	m.Data = []byte(`{}`)
	m.Header.Set(jetstream.MsgIDHeader, strings.Repeat("i", 65000))
	dead, err := deadOf(t, "HUGEID", m, strings.Repeat("é", offboard.MaxMessageLength))
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if dead.Header.Get(offboard.HeaderErrorCode) != offboard.CodeInvalidRequest || !strings.HasPrefix(dead.Header.Get(jetstream.MsgIDHeader), deadSeqPrefix) {
		t.Errorf("dead letter: code %q, id %d bytes", dead.Header.Get(offboard.HeaderErrorCode), len(dead.Header.Get(jetstream.MsgIDHeader)))
	}
}

// TestDeadLetterOfARequestWithManySmallHeaders: many small headers near
// the limit give way as one large one does, and a count of dropped
// headers the request wrote itself is not the one shown.
func TestDeadLetterOfARequestWithManySmallHeaders(t *testing.T) {
	t.Parallel()
	m := nats.NewMsg("x")
	m.Data = []byte(`{}`)
	for i := 0; headerBytes(m.Header) < 65400; i++ {
		m.Header.Add("X-"+strconv.Itoa(i), "v")
	}
	m.Header.Add("X-Multi", "a")
	m.Header.Add("X-Multi", "b")
	m.Header.Set(offboard.HeaderDroppedHeaders, "999")
	start := time.Now()
	dead, err := deadOf(t, "MANY", m, strings.Repeat("é", offboard.MaxMessageLength))
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	t.Logf("took %s, dropped %s, kept %d", time.Since(start), dead.Header.Get(offboard.HeaderDroppedHeaders), len(dead.Header))
	if n, _ := strconv.Atoi(dead.Header.Get(offboard.HeaderDroppedHeaders)); n == 0 || n == 999 {
		t.Errorf("dropped %q", dead.Header.Get(offboard.HeaderDroppedHeaders))
	}
}

// TestDeadLetterOfARequestWithASecondHugeMessageID: a request with two
// message ids, the second one taking nearly all the room for headers (the
// server goes by the first), still has its dead letter stored, under the
// first. Every value of the id was kept as the dead letter's own, which
// never gives way: the server refused the copy for its headers, and the
// request came back for ever.
func TestDeadLetterOfARequestWithASecondHugeMessageID(t *testing.T) {
	t.Parallel()
	m := nats.NewMsg("x")
	m.Data = []byte(`{}`)
	m.Header.Add(jetstream.MsgIDHeader, "contoso:r-1")
	m.Header.Add(jetstream.MsgIDHeader, strings.Repeat("i", 65000))
	dead, err := deadOf(t, "SECONDID", m, strings.Repeat("é", offboard.MaxMessageLength))
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if ids := dead.Header.Values(jetstream.MsgIDHeader); len(ids) != 1 || ids[0] != "contoso:r-1" {
		t.Errorf("dead letter's message ids %d, first %.20q; want the request's first alone", len(ids), ids)
	}
	if dead.Header.Get(offboard.HeaderErrorCode) != offboard.CodeInvalidRequest || dead.Header.Get(offboard.HeaderDroppedHeaders) != "1" {
		t.Errorf("dead letter: code %q, dropped %q; want %s and the second id dropped", dead.Header.Get(offboard.HeaderErrorCode),
			dead.Header.Get(offboard.HeaderDroppedHeaders), offboard.CodeInvalidRequest)
	}
}
