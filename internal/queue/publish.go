package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishJSON stores a JSON message with its message id (so the stream
// drops a repeat) and waits for the stream's acknowledgement.
func PublishJSON(ctx context.Context, js jetstream.JetStream, subject, msgID string, body []byte) error {
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", "application/json")
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// PublishDead stores a copy of a failed request: its body and headers as
// they were published, plus the failure, so it can be inspected and
// replayed.
func PublishDead(ctx context.Context, js jetstream.JetStream, subject string, orig jetstream.Msg, seq offboard.Seq, code, message string) error {
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
				m.Header.Add(offboard.HeaderOriginalPrefix+k, v)
			}
			m.Header.Del(k)
		}
	}
	m.Header.Set(offboard.HeaderOriginalSubject, orig.Subject())
	m.Header.Set(offboard.HeaderErrorCode, code)
	m.Header.Set(offboard.HeaderErrorMessage, message)
	m.Header.Set(offboard.HeaderRequestSeq, strconv.FormatUint(seq.N, 10))
	if m.Header.Get(jetstream.MsgIDHeader) == "" {
		// Without the publisher's id, one derived from the request's place
		// in the stream keeps a re-published dead letter single.
		m.Header.Set(jetstream.MsgIDHeader, "dead-seq:"+seq.String())
	}
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", subject, err)
	}
	return nil
}
