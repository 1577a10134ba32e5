package offboard

// GuardsReply is one worker replica's answer on Subjects.Guards(tenant):
// the tenant's guards as its tenants file sets them, and nothing else of
// that file (no credential, no application). Every replica that serves
// the tenant answers; `offboardctl guards` compares the answers.
type GuardsReply struct {
	Tenant  string `json:"tenant"`
	Replica string `json:"replica"`
	// Digest is what the replica announces of these guards to the
	// others: two replicas whose digests differ apply other guards.
	// Lists are compared as the worker matches their entries (case, a
	// tag's white space aside), so a digest may be one for lists
	// written apart.
	Digest  string        `json:"digest"`
	Protect GuardsProtect `json:"protect"`
	// RequireInactiveFor is a Go duration ("72h0m0s"); empty: not set.
	RequireInactiveFor string `json:"requireInactiveFor,omitempty"`
	// Budget is the tenants file's ("500/24h"); empty: none. An
	// override (offboardctl budget) is not the replica's to tell: it is
	// in the control bucket, one for every replica.
	Budget string `json:"budget,omitempty"`
}

// GuardsProtect is a tenant's protect lists, as the worker matches them
// (device ids and globs in lower case).
type GuardsProtect struct {
	MachineIDs       []string `json:"machineIds"`
	ComputerDNSNames []string `json:"computerDnsNames"`
	MachineTags      []string `json:"machineTags"`
	RbacGroups       []string `json:"rbacGroups"`
}
