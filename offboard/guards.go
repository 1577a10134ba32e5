package offboard

import (
	"encoding/json"
	"fmt"
)

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
	// Part and Parts number the messages of an answer too large for one
	// (the server's max_payload): each part holds some entries of the
	// protect lists, each list's in order, and the other fields whole;
	// the lists are the parts' joined in Part order. 0: one message.
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
}

// GuardsProtect is a tenant's protect lists, as the worker matches them
// (device ids and globs in lower case).
type GuardsProtect struct {
	MachineIDs       []string `json:"machineIds"`
	ComputerDNSNames []string `json:"computerDnsNames"`
	MachineTags      []string `json:"machineTags"`
	RbacGroups       []string `json:"rbacGroups"`
}

// guardsPartRoom is what a part leaves out of the limit beside its
// fields and entries: its Part and Parts, and the JSON's commas.
const guardsPartRoom = 64

// Encode is the answer as the messages that carry it, each at most
// limit bytes (the server's max_payload): one when it fits, else parts
// (Part, Parts) that share out the protect lists' entries. A tier-0
// export of 50,000 device ids is some 2 MB of JSON, twice the default
// max_payload. An error when one entry and the other fields alone are
// more than limit.
func (r GuardsReply) Encode(limit int) ([][]byte, error) {
	whole, err := json.Marshal(r)
	if err != nil || len(whole) <= limit {
		return [][]byte{whole}, err
	}
	lists := func(p *GuardsProtect) []*[]string {
		return []*[]string{&p.MachineIDs, &p.ComputerDNSNames, &p.MachineTags, &p.RbacGroups}
	}
	empty := r
	empty.Protect = GuardsProtect{MachineIDs: []string{}, ComputerDNSNames: []string{}, MachineTags: []string{}, RbacGroups: []string{}}
	base, err := json.Marshal(empty)
	if err != nil {
		return nil, err
	}
	room := limit - len(base) - guardsPartRoom
	var parts []GuardsReply
	part, used := empty, 0
	for i, l := range lists(&r.Protect) {
		for _, e := range *l {
			q, err := json.Marshal(e)
			if err != nil {
				return nil, err
			}
			size := len(q) + 1 // and its comma
			if size > room {
				return nil, fmt.Errorf("a protect entry of %d bytes does not fit in a message of %d", len(q), limit)
			}
			if used+size > room {
				parts = append(parts, part)
				part, used = empty, 0
				part.Protect = GuardsProtect{MachineIDs: []string{}, ComputerDNSNames: []string{}, MachineTags: []string{}, RbacGroups: []string{}}
			}
			to := lists(&part.Protect)[i]
			*to = append(*to, e)
			used += size
		}
	}
	parts = append(parts, part)
	out := make([][]byte, len(parts))
	for i := range parts {
		parts[i].Part, parts[i].Parts = i+1, len(parts)
		if out[i], err = json.Marshal(parts[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// JoinGuardsParts is the answer the parts of one replica's (Encode) make,
// given in any order, and whether they are all there: every Part from 1
// to Parts once, of one digest.
func JoinGuardsParts(parts []GuardsReply) (GuardsReply, bool) {
	if len(parts) == 0 {
		return GuardsReply{}, false
	}
	if len(parts) == 1 && parts[0].Parts <= 1 {
		r := parts[0]
		r.Part, r.Parts = 0, 0
		return r, true
	}
	n := parts[0].Parts
	byPart := make([]*GuardsReply, n+1)
	for i := range parts {
		p := &parts[i]
		if p.Parts != n || p.Part < 1 || p.Part > n || byPart[p.Part] != nil || p.Digest != parts[0].Digest {
			return GuardsReply{}, false
		}
		byPart[p.Part] = p
	}
	if len(parts) != n {
		return GuardsReply{}, false
	}
	r := *byPart[1]
	r.Part, r.Parts = 0, 0
	r.Protect = GuardsProtect{}
	for _, p := range byPart[1:] {
		r.Protect.MachineIDs = append(r.Protect.MachineIDs, p.Protect.MachineIDs...)
		r.Protect.ComputerDNSNames = append(r.Protect.ComputerDNSNames, p.Protect.ComputerDNSNames...)
		r.Protect.MachineTags = append(r.Protect.MachineTags, p.Protect.MachineTags...)
		r.Protect.RbacGroups = append(r.Protect.RbacGroups, p.Protect.RbacGroups...)
	}
	for _, l := range []*[]string{&r.Protect.MachineIDs, &r.Protect.ComputerDNSNames, &r.Protect.MachineTags, &r.Protect.RbacGroups} {
		if *l == nil {
			*l = []string{}
		}
	}
	return r, true
}
