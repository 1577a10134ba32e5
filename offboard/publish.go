package offboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
//
// On a cluster, the stream answers a publish whose message id is that of
// another publish it is still storing "duplicate message id is in
// process": the same request published again at once after a lost
// answer, or by another publisher. That is no refusal, and says nothing
// of the request's fate: Publish publishes it again every
// inProcessPause until the stream drops it as the repeat (Duplicate) or
// stores it; past ctx, or inProcessFor, that answer is returned (an
// *jetstream.APIError of code 409, after which publishing the request
// again is safe, as after a lost answer).
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
	for until := time.Now().Add(inProcessFor); inProcess(err) && time.Now().Before(until) && sleepCtx(ctx, inProcessPause); {
		ack, err = js.PublishMsg(ctx, m)
	}
	if err != nil {
		return nil, fmt.Errorf("publish request %s to %s: %w", r.RequestID, m.Subject, err)
	}
	return ack, nil
}

// inProcessPause is the pause before Publish publishes again a request
// whose message id the stream was storing for another publish: a store
// on a cluster's replicas takes milliseconds.
const inProcessPause = 20 * time.Millisecond

// inProcessFor bounds how long Publish publishes again a request "in
// process", whatever ctx: the client's own default wait for an answer. A
// store that takes longer is a stream in trouble, whose answer the
// caller hears.
const inProcessFor = 5 * time.Second

// errCodeInProcess is nats-server's code of "duplicate message id is in
// process" (JSStreamDuplicateMessageConflict), which the client does not
// name.
const errCodeInProcess jetstream.ErrorCode = 10158

// inProcess says whether err is a clustered stream's answer to a publish
// whose message id is that of another publish it has not stored yet.
func inProcess(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeInProcess
}

// sleepCtx waits d, or until ctx ends: false then.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
