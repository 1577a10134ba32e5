package offboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidRequest is what Publish refuses before sending: a request the
// worker would answer invalid_request, or a tenant, priority or subject
// prefix that makes no request subject. Publishing it again as it is will not help.
var ErrInvalidRequest = errors.New("invalid request")

// checkUTF8 refuses a field that is not UTF-8: encoding/json would send
// U+FFFD in place of its bytes, which passes the worker's checks as text
// other than the one given. The forms of the other fields refuse it.
func checkUTF8(r Request) error {
	for _, f := range []struct{ name, v string }{
		{"comment", r.Comment}, {"requestedBy", r.RequestedBy}, {"source", r.Source},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s is not UTF-8", f.name)
		}
	}
	return nil
}

// Publish checks a request and publishes it on tenant's subject of the
// given priority (text fields that are not UTF-8 are refused, not
// rewritten), with the message id the contract asks for, and returns
// the stream's answer. A duplicate (the same tenant, request id and attempt
// within the stream's duplicate window) is not stored twice: the answer's
// Duplicate says so. A tenant that is not a name of the contract's form,
// or a priority other than Normal and Bulk, is refused before publishing:
// the subject would be another tenant's, the other priority's ("contoso.bulk"),
// a wildcard or no subject at all; so is a Subjects prefix that
// CheckPrefix refuses.
//
// Its errors tell the caller what to do:
//   - ErrInvalidRequest: refused before sending; fix the request.
//   - jetstream.ErrNoStreamResponse: no stream took the subject (the
//     worker has not created its streams, or the prefix is not the
//     worker's); nothing was stored, publish again once it is there.
//   - context.Canceled, context.DeadlineExceeded: the answer was lost;
//     the request may be stored. Publishing it again is safe: the stream
//     drops the repeat, and Duplicate says so.
//   - *jetstream.APIError: the stream refused the message.
func Publish(ctx context.Context, js jetstream.JetStream, s Subjects, tenant string, p Priority, r Request) (*jetstream.PubAck, error) {
	if !TenantName.MatchString(tenant) {
		return nil, fmt.Errorf("request %s: %w: tenant %s is not a tenant name (%s)", Quote(r.RequestID), ErrInvalidRequest, Quote(tenant), TenantName)
	}
	if p != Normal && p != Bulk {
		return nil, fmt.Errorf("request %s: %w: priority %s is neither %s nor %s", Quote(r.RequestID), ErrInvalidRequest, Quote(string(p)), Normal, Bulk)
	}
	if err := CheckPrefix(s.prefix()); err != nil {
		return nil, fmt.Errorf("request %s: %w: subject prefix %s: %w", Quote(r.RequestID), ErrInvalidRequest, Quote(s.Prefix), err)
	}
	if err := checkUTF8(r); err != nil {
		return nil, fmt.Errorf("request %s: %w: %w", Quote(r.RequestID), ErrInvalidRequest, err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode request %s: %w", Quote(r.RequestID), err)
	}
	if _, err := ParseRequest(data, tenant); err != nil {
		return nil, fmt.Errorf("request %s: %w: %w", Quote(r.RequestID), ErrInvalidRequest, err)
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
