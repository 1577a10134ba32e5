package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishJSON stores a JSON message with its message id (so the stream
// drops a repeat) and waits for the stream's acknowledgement.
func PublishJSON(ctx context.Context, js jetstream.JetStream, subject, msgID string, body []byte) error {
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	if _, err := js.PublishMsg(ctx, JSONMsg(subject, msgID, body)); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// JSONMsg is a JSON message of body on subject, with its message id: the
// stream drops a repeat of it.
func JSONMsg(subject, msgID string, body []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", "application/json")
	return m
}

// Stored is a store sent and not yet acknowledged: it returns once the
// stream has stored the message, or why it has not.
type Stored func(ctx context.Context) error

// PublishJSONAsync is PublishJSON without the wait: the message goes out
// at once, beside others, and the returned Stored waits for the stream's
// acknowledgement. Once that has returned nil, repeat says whether the
// stream dropped the message as a repeat of its message id.
func PublishJSONAsync(js jetstream.JetStream, subject, msgID string, body []byte) (s Stored, repeat func() bool, err error) {
	f, err := js.PublishMsgAsync(JSONMsg(subject, msgID, body))
	if err != nil {
		return nil, nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	var dup bool
	return awaitAck(f, "publish to "+subject, &dup), func() bool { return dup }, nil
}

// awaitAck waits for an asynchronous publish's acknowledgement; dup, if
// not nil, is set to whether the stream dropped the message as a repeat.
func awaitAck(f jetstream.PubAckFuture, what string, dup *bool) Stored {
	return func(ctx context.Context) error {
		select {
		case pa := <-f.Ok():
			if dup != nil && pa != nil {
				*dup = pa.Duplicate
			}
			return nil
		case err := <-f.Err():
			return fmt.Errorf("%s: %w", what, err)
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}

// WaitStored waits for every store, and returns their errors joined. It
// waits at most StepTimeout: a publish whose answer never comes (its
// stream lost its leader while it was on the way) fails as an outage, so
// the request is taken again soon, not when a longer deadline runs out.
func WaitStored(ctx context.Context, stores ...Stored) error {
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	var errs []error
	for _, s := range stores {
		if err := s(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PublishDead stores a copy of a failed request: its body and headers as
// they were published, plus the failure, so it can be inspected and
// replayed.
func PublishDead(ctx context.Context, js jetstream.JetStream, subject string, orig jetstream.Msg, seq offboard.Seq, code, message string) error {
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	if _, err := js.PublishMsg(ctx, deadMsg(subject, orig, seq, code, message)); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", subject, err)
	}
	return nil
}

// PublishDeadAsync is PublishDead without the wait (see PublishJSONAsync).
func PublishDeadAsync(js jetstream.JetStream, subject string, orig jetstream.Msg, seq offboard.Seq, code, message string) (Stored, error) {
	f, err := js.PublishMsgAsync(deadMsg(subject, orig, seq, code, message))
	if err != nil {
		return nil, fmt.Errorf("publish dead letter to %s: %w", subject, err)
	}
	return awaitAck(f, "publish dead letter to "+subject, nil), nil
}

// DeadIDByPlace says whether the dead letter of a request with headers h
// takes its message id from the request's place in the stream (seq of
// PublishDeadAsync) rather than from the request's own message id. So
// does a request whose id is longer than the room a request is given for
// its headers: the id is the one header of the request's a dead letter
// never drops (fitHeaders), and one near the server's limit for headers
// would leave no room for the worker's, the copy refused for ever.
func DeadIDByPlace(h nats.Header) bool {
	id := h.Get(jetstream.MsgIDHeader)
	return id == "" || strings.HasPrefix(id, deadSeqPrefix) || len(id) > offboard.MaxRequestHeaders
}

// deadSeqPrefix begins the message id of a dead letter named by its
// request's place in the stream.
const deadSeqPrefix = "dead-seq:"

func deadMsg(subject string, orig jetstream.Msg, seq offboard.Seq, code, message string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = orig.Data()
	for k, vs := range orig.Headers() {
		for _, v := range vs {
			if !sendableHeaderName(k) {
				// nats.go refuses to send the whole message for it: the
				// dead letter could never be stored, and the request
				// would be taken again forever. Kept as a value.
				m.Header.Add(offboard.HeaderOriginalHeader, k+": "+v)
				continue
			}
			m.Header.Add(k, v)
		}
	}
	for k := range m.Header {
		// Headers the server acts on (Nats-Expected-Stream, Nats-Rollup,
		// Nats-TTL, ...) would make the copy fail or misbehave in the
		// dead-letter stream: they are kept under Mde-Original-<name>.
		if strings.HasPrefix(k, "Nats-") && k != jetstream.MsgIDHeader {
			for _, v := range m.Header[k] {
				m.Header.Add(offboard.HeaderOriginalPrefix+k, v)
			}
			m.Header.Del(k)
		}
	}
	if StatusLookalike(m.Data, m.Header) {
		// Read through a consumer (offboardctl dead ls), a copy that
		// looks like a status message of the server would never be seen,
		// or end the read with an error.
		for _, v := range m.Header.Values("Status") {
			m.Header.Add(offboard.HeaderOriginalPrefix+"Status", v)
		}
		m.Header.Del("Status")
	}
	setOwn(m.Header, offboard.HeaderOriginalSubject, orig.Subject())
	setOwn(m.Header, offboard.HeaderErrorCode, code)
	setOwn(m.Header, offboard.HeaderErrorMessage, message)
	setOwn(m.Header, offboard.HeaderRequestSeq, strconv.FormatUint(seq.N, 10))
	// The dead letter's id is one value: the server goes by the first of
	// a request's message ids, and every value under the name is the
	// dead letter's own, which never gives way (fitHeaders). Another
	// value, however large, would take the copy over the limit for good.
	var others []string
	if ids := m.Header.Values(jetstream.MsgIDHeader); len(ids) > 1 {
		m.Header[jetstream.MsgIDHeader], others = ids[:1], ids[1:]
	}
	if id := m.Header.Get(jetstream.MsgIDHeader); len(id) > offboard.MaxRequestHeaders {
		others = append([]string{id}, others...)
	}
	if len(others) > 0 {
		// Kept as headers of the request's, which give way if need be.
		m.Header[offboard.HeaderOriginalPrefix+jetstream.MsgIDHeader] = others
	}
	if DeadIDByPlace(m.Header) {
		// Without the publisher's id, one derived from the request's place
		// in the stream keeps a re-published dead letter single. A
		// publisher's id of that form gets one of its own place too: as
		// it was, it could take the dead-letter id of the request at the
		// place it names, whose dead letter the stream would then drop.
		m.Header.Set(jetstream.MsgIDHeader, deadSeqPrefix+seq.String())
	}
	dropOwn(m.Header, offboard.HeaderDroppedHeaders)
	if n := fitHeaders(m.Header); n > 0 {
		m.Header.Set(offboard.HeaderDroppedHeaders, strconv.Itoa(n))
	}
	return m
}

// maxHeaderBytes is the most bytes of headers the server stores with a
// message (JSStreamHeaderExceedsMaximumErr beyond).
const maxHeaderBytes = 65535

// fitHeaders drops a dead letter's headers that are the request's own,
// the longest first, until the headers fit in maxHeaderBytes, and returns
// how many values it dropped. The request stream takes a request whose
// headers come near that limit (its message size leaves the room), and
// the worker's own headers would then take the dead letter over it: the
// server would refuse the copy, and the request, never acked, would come
// back for ever. The worker's headers, and the message id, stay.
func fitHeaders(h nats.Header) int {
	size := headerBytes(h)
	if size <= maxHeaderBytes {
		return 0
	}
	// Room for the count of those dropped.
	limit := maxHeaderBytes - len(offboard.HeaderDroppedHeaders+": \r\n") - len(strconv.Itoa(math.MaxInt))
	// Each header's size once, the longest first: a request of thousands
	// of small headers would otherwise be measured again for each one
	// dropped, seconds of CPU for one dead letter.
	type sized struct {
		name string
		n    int
	}
	var theirs []sized
	for k, vs := range h {
		if !ownHeader(k) {
			theirs = append(theirs, sized{k, headerBytes(nats.Header{k: vs}) - headerBytes(nil)})
		}
	}
	slices.SortFunc(theirs, func(a, b sized) int {
		if a.n != b.n {
			return cmp.Compare(b.n, a.n)
		}
		return strings.Compare(a.name, b.name)
	})
	dropped := 0
	for _, hd := range theirs {
		if size <= limit {
			break
		}
		dropped += len(h[hd.name])
		delete(h, hd.name)
		size -= hd.n
	}
	return dropped
}

// ownHeader says whether a dead letter's header is one the worker writes,
// or its message id.
func ownHeader(k string) bool {
	switch k {
	case offboard.HeaderOriginalSubject, offboard.HeaderErrorCode, offboard.HeaderErrorMessage,
		offboard.HeaderRequestSeq, offboard.HeaderDroppedHeaders, jetstream.MsgIDHeader:
		return true
	}
	return false
}

// headerBytes is the size of h as the NATS client writes it: a status
// line, then "name: value" and CRLF for each value (trimmed), then CRLF.
func headerBytes(h nats.Header) int {
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(textproto.TrimString(v)) + 4
		}
	}
	return n
}

// setOwn sets a header the worker writes on a dead letter, and removes the
// request's headers of that name in another case (mde-error-code): NATS
// keeps header names as written, and a reader that ignores their case, as
// HTTP's do, could read a publisher's forged value for the worker's.
func setOwn(h nats.Header, name, value string) {
	dropOwn(h, name)
	h.Set(name, value)
}

// dropOwn removes the request's headers of a name the worker writes on a
// dead letter, in any case.
func dropOwn(h nats.Header, name string) {
	for k := range h {
		if strings.EqualFold(k, name) {
			delete(h, k)
		}
	}
}

// sendableHeaderName says whether nats.go sends a header of this name:
// printable ASCII without any of "()/,:;<=>?@[\]{} (its check, stricter
// than the protocol's, which the server and other clients follow).
func sendableHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := range len(k) {
		if c := k[i]; c < '!' || c > '~' || strings.IndexByte(`"()/,:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
