package offboard

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publish checks a request and publishes it on tenant's subject of the
// given priority, with the message id the contract asks for, and returns
// the stream's answer. A duplicate (the same tenant, request id and attempt
// within the stream's duplicate window) is not stored twice: the answer's
// Duplicate says so.
func Publish(ctx context.Context, js jetstream.JetStream, s Subjects, tenant string, p Priority, r Request) (*jetstream.PubAck, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode request %s: %w", r.RequestID, err)
	}
	if _, err := ParseRequest(data, tenant); err != nil {
		return nil, fmt.Errorf("request %s: %w", Quote(r.RequestID), err)
	}
	m := nats.NewMsg(s.Request(tenant, p))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, RequestMsgID(tenant, r.RequestID, r.Attempt))
	m.Header.Set("Content-Type", "application/json")
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("publish request %s to %s: %w", r.RequestID, m.Subject, err)
	}
	return ack, nil
}
