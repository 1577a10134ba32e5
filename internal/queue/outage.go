package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterForming says whether err is a JetStream cluster that cannot place
// a stream's replicas yet: "no suitable peers for placement", while its
// servers have not all reported to the meta leader (a cluster starting, a
// server restarting). It is also what a cluster with fewer servers than
// the stream's replicas answers, for good.
func ClusterForming(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeNoPeers
}

// ReplicasUnsupported says whether err is a server that is not
// clustered refusing a stream of more than one replica.
func ReplicasUnsupported(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeReplicasUnsupported
}

// InProcess says whether err is a clustered stream's answer to a publish
// whose message id is that of another publish it has not stored yet:
// "duplicate message id is in process". The answer says nothing of the
// publish's fate: published again a moment later, it is dropped as a
// duplicate once the other is stored, or stored if the other was not.
func InProcess(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeInProcess
}

// Codes of nats-server's JetStream API errors, as the client reads them.
const (
	errCodeInProcess           = jetstream.ErrorCode(server.JSStreamDuplicateMessageConflict)
	errCodeNoPeers             = jetstream.ErrorCode(server.JSClusterNoPeersErrF)
	errCodeNotAvailable        = jetstream.ErrorCode(server.JSClusterNotAvailErr)
	errCodeReplicasUnsupported = jetstream.ErrorCode(server.JSStreamReplicasNotSupportedErr)
)

// ExplainNoJetStream makes a "no responders" error of a JetStream request
// say so when the server has no JetStream: the error alone does not tell,
// and it is also what a cluster answers for a moment while a stream has
// no leader. (An account without JetStream is answered in so many words.)
// It asks the server once; any other error, or no answer, is returned as
// it is.
func ExplainNoJetStream(ctx context.Context, js jetstream.JetStream, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
		return err
	}
	if _, infoErr := js.AccountInfo(ctx); errors.Is(infoErr, jetstream.ErrJetStreamNotEnabled) {
		return fmt.Errorf("the NATS server has no JetStream: start it with JetStream enabled (-js, or jetstream {} in its configuration): %w", err)
	}
	return err
}

// NotReady says whether err, from setting up the streams, is NATS not
// ready for them yet rather than a refusal: a request unanswered (a
// cluster without quorum), the connection reconnecting, "JetStream system
// temporarily unavailable", or a cluster forming (ClusterForming). Every
// part of a joined error must be so: one refusal among them is a refusal.
// No responders is not: that is a server or account without JetStream.
func NotReady(err error) bool {
	if err == nil {
		return false
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, part := range joined.Unwrap() {
			if part != nil && !NotReady(part) {
				return false
			}
		}
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.ErrorCode == errCodeNoPeers || api.ErrorCode == errCodeNotAvailable
	}
	return isAny(err, unanswered)
}

// unanswered are the client's errors for a request that got no answer, or
// could not be sent while the connection is away.
var unanswered = []error{
	nats.ErrTimeout, context.DeadlineExceeded, nats.ErrDisconnected, nats.ErrConnectionReconnecting,
	nats.ErrNoServers, jetstream.ErrNoStreamResponse,
}

// isAny says whether err is one of errs.
func isAny(err error, errs []error) bool {
	for _, e := range errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Outage says whether err is NATS being away for a moment (a server
// restarting, a stream electing its leader, the connection reconnecting)
// rather than a refusal: a step that failed so is worth taking again as
// soon as NATS is back. A refusal for a limit (StoreRefused) is not one,
// though NATS answers it with a 503 too.
func Outage(err error) bool {
	if err == nil {
		return false
	}
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Code == 503 && !StoreRefused(err) { // JetStream temporarily unavailable
		return true
	}
	return isAny(err, unanswered) || isAny(err, []error{nats.ErrNoResponders, jetstream.ErrNoHeartbeat})
}

// StepTimeout bounds one JetStream step of a request (a ledger read or
// write, a quota journal entry, a result, an ack). A step sent while a
// stream has no leader, or into a connection about to fail over, gets no
// answer at all: bounded, it fails as an outage and is taken again soon,
// instead of holding the request for the client's default of 5 s or more.
const StepTimeout = 2 * time.Second

// StepCtx is ctx bounded by StepTimeout (or its own deadline, if sooner).
func StepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, StepTimeout)
}

// Codes of nats-server's refusals to store a message for a limit.
const (
	// A stream at its max_msgs, max_bytes or max_msgs_per_subject
	// (discard new), a message over its max_msg_size.
	errCodeStoreFailed = jetstream.ErrorCode(server.JSStreamStoreFailedF)
	// The server's JetStream storage full (max_file_store,
	// max_memory_store), or the account's limits.
	errCodeInsufficient    = jetstream.ErrorCode(server.JSInsufficientResourcesErr)
	errCodeAccountLimits   = jetstream.ErrorCode(server.JSAccountResourcesExceededErr)
	errCodeStorageExceeded = jetstream.ErrorCode(server.JSStorageResourcesExceededErr)
	errCodeMemoryExceeded  = jetstream.ErrorCode(server.JSMemoryResourcesExceededErr)
)

// StoreRefused says whether err is NATS refusing to store a message for a
// limit: a stream or bucket full (one that discards new messages), or
// JetStream out of storage on the server or in the account. NATS answers
// some of them with a 503, as it answers a stream without a leader, but
// they last until an operator acts (StoreRefusedHint): they are no outage.
func StoreRefused(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	if api.ErrorCode == errCodeStoreFailed {
		// Also the answer of a stream whose store is closing (its server
		// shutting down, a replica's stream reset to catch up with its
		// leader): that passes once the stream is back, an outage.
		return api.Description != server.ErrStoreClosed.Error()
	}
	return OutOfStorage(err)
}

// OutOfStorage says whether err is NATS refusing to store a message
// because JetStream is out of storage (the server's or the account's),
// not for a stream's own limit: one of StoreRefused's refusals.
func OutOfStorage(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode {
	case errCodeInsufficient, errCodeAccountLimits, errCodeStorageExceeded, errCodeMemoryExceeded:
		return true
	}
	return false
}

// StoreRefusedHint says what an operator does about a refusal of
// StoreRefused.
const StoreRefusedHint = "NATS refuses to store for a limit: a stream or bucket is full (its max_msgs or max_bytes, " +
	"with discard new) or JetStream is out of storage (the server's max_file_store, the account's limits); " +
	"raise the limit (nats stream info names them) or free storage"
