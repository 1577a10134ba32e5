package queue

import "github.com/contoso-secops/mde-offboard/offboard"

// Names of the worker's own consumers; the contract's streams and subjects
// are in package offboard.
const (
	// ConsumerUnrouted sees every request; it answers those of tenants
	// that are not configured and lets the others go to their tenant.
	ConsumerUnrouted = "unrouted"

	// UnknownTenant stands for a tenant that is not configured, in subjects
	// of results and dead letters whose tenant token is not a valid name,
	// and in metric labels.
	UnknownTenant = "_unknown"
)

// Prefixes of the consumer names of tenants' requests.
const (
	consumerNormal = "tenant-"
	consumerBulk   = "bulk-"
)

// ConsumerName is the durable consumer of a tenant's requests of one
// priority. The priority is a prefix, not a suffix: tenant names may hold
// '-', and "tenant-a-bulk" could be tenant a's bulk consumer or tenant
// a-bulk's normal one.
func ConsumerName(tenant string, p offboard.Priority) string {
	if p == offboard.Bulk {
		return consumerBulk + tenant
	}
	return consumerNormal + tenant
}
