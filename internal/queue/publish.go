package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter headers added to the original request's headers.
const (
	HeaderErrorCode    = "Mde-Error-Code"
	HeaderErrorMessage = "Mde-Error-Message"
	HeaderRequestSeq   = "Mde-Request-Seq"
	// HeaderOriginalPrefix keeps a request's Nats-* headers (but
	// Nats-Msg-Id) in its dead letter.
	HeaderOriginalPrefix = "Mde-Original-"
)

// ResultMsgID is the Nats-Msg-Id of a request's result, so that a result
// published again after a crash is dropped by the stream as a duplicate.
// It holds the tenant because request ids are unique per tenant only: two
// tenants' CMDBs may well both send "CHG0012345". The ':' after the tenant
// cannot occur in a tenant name, so tenant "contoso" with id "gov-1" and
// tenant "contoso-gov" with id "1" stay apart.
func ResultMsgID(tenant, requestID string) string {
	return "result:" + tenant + ":" + requestID
}

// Seq identifies a request by its place in the request stream, for answers
// that do not go through the ledger. The stream's creation time keeps the
// ids of a re-created stream, whose sequences start again at 1, apart.
type Seq struct {
	Epoch int64 // creation time of the request stream, Unix nanoseconds
	N     uint64
}

func (s Seq) String() string {
	return strconv.FormatInt(s.Epoch, 36) + ":" + strconv.FormatUint(s.N, 10)
}

// SeqResultMsgID is the Nats-Msg-Id of a result published without the
// ledger (a request that failed its checks, or of an unconfigured tenant).
func SeqResultMsgID(tenant string, seq Seq) string {
	return "result-seq:" + tenant + ":" + seq.String()
}

// PublishResult stores a result and waits for the stream's acknowledgement.
func PublishResult(ctx context.Context, js jetstream.JetStream, subject, msgID string, body []byte) error {
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", "application/json")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish result to %s: %w", subject, err)
	}
	return nil
}

// PublishDead stores a copy of a failed request: its body and headers as
// they were published, plus the failure, so it can be inspected and
// replayed.
func PublishDead(ctx context.Context, js jetstream.JetStream, subject string, orig jetstream.Msg, seq Seq, code, message string) error {
	m := nats.NewMsg(subject)
	m.Data = orig.Data()
	for k, vs := range orig.Headers() {
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	for k := range m.Header {
		// Headers the server acts on (Nats-Expected-Stream, Nats-Rollup,
		// Nats-TTL, ...) would make the copy fail or misbehave in the
		// dead-letter stream: they are kept under Mde-Original-<name>.
		if strings.HasPrefix(k, "Nats-") && k != jetstream.MsgIDHeader {
			for _, v := range m.Header[k] {
				m.Header.Add(HeaderOriginalPrefix+k, v)
			}
			m.Header.Del(k)
		}
	}
	m.Header.Set(HeaderErrorCode, code)
	m.Header.Set(HeaderErrorMessage, message)
	m.Header.Set(HeaderRequestSeq, strconv.FormatUint(seq.N, 10))
	if m.Header.Get(jetstream.MsgIDHeader) == "" {
		// Without the publisher's id, one derived from the request's place
		// in the stream keeps a re-published dead letter single.
		m.Header.Set(jetstream.MsgIDHeader, "dead-seq:"+seq.String())
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", subject, err)
	}
	return nil
}
