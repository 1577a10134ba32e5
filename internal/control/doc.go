// Package control is the operators' control plane: pauses and budget
// overrides per tenant, kept in the JetStream key-value bucket
// MDE_OFFBOARD_CONTROL so that every worker replica sees them within a
// moment and they survive restarts.
//
// Keys, one per control (tenant names cannot hold '.'):
//
//	pause.<tenant>.normal   {"paused":true,"by":"alice","reason":"CAB-42","at":"..."}
//	pause.<tenant>.bulk     (same)
//	budget.<tenant>         {"value":"500/24h","by":"alice","reason":"...","at":"..."}
//
// A resume writes "paused": false and a cleared budget an empty value, rather
// than deleting the key, so the bucket itself says who lifted a control and
// why. Store writes the keys (offboardctl) and publishes each change as an
// Event on <prefix>.control.<tenant> for the audit trail; Watcher is what
// every worker replica runs to follow them.
package control
