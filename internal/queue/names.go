// Package queue is the worker's side of NATS JetStream: the embedded
// server, the streams, consumers and ledger it needs, the priority fetch
// that the quota gates, and the subjects of the public contract.
package queue

import (
	"strings"
)

// Stream, bucket and consumer names of the public contract.
const (
	StreamRequests = "MDE_OFFBOARD_REQUESTS"
	StreamResults  = "MDE_OFFBOARD_RESULTS"
	StreamDead     = "MDE_OFFBOARD_DEAD"
	BucketLedger   = "MDE_OFFBOARD_LEDGER"
	StreamQuota    = "MDE_OFFBOARD_QUOTA"

	// ConsumerUnrouted sees every request; it answers those of tenants
	// that are not configured and lets the others go to their tenant.
	ConsumerUnrouted = "unrouted"

	// UnknownTenant stands for a tenant that is not configured, in subjects
	// of results and dead letters whose tenant token is not a valid name,
	// and in metric labels.
	UnknownTenant = "_unknown"
)

// Priority of a request.
type Priority string

// Priorities, in the order they are served.
const (
	Normal Priority = "normal"
	Bulk   Priority = "bulk"
)

// Subjects builds the contract's subjects under one prefix.
type Subjects struct{ Prefix string }

// Request is where a tenant's requests of a priority are published.
func (s Subjects) Request(tenant string, p Priority) string {
	if p == Bulk {
		return s.Prefix + ".request." + tenant + ".bulk"
	}
	return s.Prefix + ".request." + tenant
}

// AllRequests matches every request subject.
func (s Subjects) AllRequests() string { return s.Prefix + ".request.>" }

// Result is the subject of a tenant's results.
func (s Subjects) Result(tenant string) string { return s.Prefix + ".result." + tenant }

// Dead is the subject of a tenant's dead letters.
func (s Subjects) Dead(tenant string) string { return s.Prefix + ".dead." + tenant }

// Action is the subject of a tenant's Machine Action status changes.
func (s Subjects) Action(tenant string) string { return s.Prefix + ".action." + tenant }

// Quota is the subject of a tenant's quota journal.
func (s Subjects) Quota(tenant string) string { return s.Prefix + ".quota." + tenant }

// AllQuota matches every tenant's quota journal.
func (s Subjects) AllQuota() string { return s.Prefix + ".quota.>" }

// ParseRequest reads the tenant token and priority of a request subject.
// ok is false when the subject has neither contract form.
func (s Subjects) ParseRequest(subject string) (tenant string, p Priority, ok bool) {
	rest, found := strings.CutPrefix(subject, s.Prefix+".request.")
	if !found || rest == "" {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	switch {
	case len(parts) == 1:
		return parts[0], Normal, true
	case len(parts) == 2 && parts[1] == "bulk":
		return parts[0], Bulk, true
	}
	return parts[0], "", false
}

// Prefixes of the consumer names of tenants' requests.
const (
	consumerNormal = "tenant-"
	consumerBulk   = "bulk-"
)

// ConsumerName is the durable consumer of a tenant's requests of one
// priority. The priority is a prefix, not a suffix: tenant names may hold
// '-', and "tenant-a-bulk" could be tenant a's bulk consumer or tenant
// a-bulk's normal one.
func ConsumerName(tenant string, p Priority) string {
	if p == Bulk {
		return consumerBulk + tenant
	}
	return consumerNormal + tenant
}
