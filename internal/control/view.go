package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// View is the controls in force, as read from the bucket. The zero value
// is empty: nothing paused, no override. It is not safe for concurrent
// use; Watcher guards its own.
type View struct {
	pauses  map[string]Entry // by PauseKey
	budgets map[string]Entry // by tenant
	// revisions are the bucket's revisions of the entries held, by key.
	revisions map[string]uint64
}

// lowest is the lowest revision of an entry held (0: none). A bucket whose
// first message comes after it lost that entry without a delete.
func (v *View) lowest() uint64 {
	var low uint64
	for _, r := range v.revisions {
		if low == 0 || r < low {
			low = r
		}
	}
	return low
}

// inForce counts the controls in force.
func (v *View) inForce() int {
	n := 0
	for _, e := range v.pauses {
		if e.Paused {
			n++
		}
	}
	for _, e := range v.budgets {
		if e.Value != "" {
			n++
		}
	}
	return n
}

// Pause returns the entry of a tenant's pause of one priority; ok is false
// when the tenant was never paused.
func (v *View) Pause(tenant string, p offboard.Priority) (Entry, bool) {
	e, ok := v.pauses[PauseKey(tenant, p)]
	return e, ok
}

// Paused says whether the tenant's priority is paused.
func (v *View) Paused(tenant string, p offboard.Priority) bool {
	return v.pauses[PauseKey(tenant, p)].Paused
}

// Budget returns the tenant's budget override ("<count>/<duration>"); ok
// is false when none is set and the tenants file's budget applies.
func (v *View) Budget(tenant string) (Entry, bool) {
	e := v.budgets[tenant]
	return e, e.Value != ""
}

// Tenants lists, in order, the tenants with a control in force: a pause
// of either priority, or a budget override.
func (v *View) Tenants() []string {
	var tenants []string
	for key, e := range v.pauses {
		if _, tenant, _, ok := ParseKey(key); ok && e.Paused {
			tenants = append(tenants, tenant)
		}
	}
	for tenant, e := range v.budgets {
		if e.Value != "" {
			tenants = append(tenants, tenant)
		}
	}
	slices.Sort(tenants)
	return slices.Compact(tenants)
}

// apply records one entry of the bucket; it returns what changed, for the
// log, and false for an entry of no known form.
func (v *View) apply(e jetstream.KeyValueEntry) (change, error) {
	kind, tenant, p, ok := ParseKey(e.Key())
	if !ok {
		return change{}, fmt.Errorf("unknown control key %q", e.Key())
	}
	var ent Entry
	var unreadable error
	if e.Operation() == jetstream.KeyValuePut {
		if err := readEntry(e.Value(), &ent, kind == "pause"); err != nil {
			if kind != "pause" {
				// A budget entry the worker cannot read is an override
				// it ignores, as one whose value is not a budget: the
				// tenants file's budget applies, on a replica that read
				// the override before it as on one started after, and
				// status says the override is ignored.
				ent = Entry{Value: UnreadableBudget, By: "unknown", At: e.Created()}
				unreadable = &unreadableError{Key: e.Key(), Err: err, Taken: "an override that is no budget (the tenants file's applies)"}
			} else {
				// Someone meant to pause or resume, and wrote a value the
				// worker cannot read ("paused": "true", "at": "now"): taken
				// as paused, not as whatever came before, until the key is
				// written again (offboardctl pause or resume).
				ent = Entry{Paused: true, By: "unknown", At: e.Created(),
					Reason: "the control entry could not be read: taken as paused until written again (offboardctl resume)"}
				unreadable = &unreadableError{Key: e.Key(), Err: err, Taken: "paused"}
			}
		}
	}
	if v.pauses == nil {
		v.pauses, v.budgets, v.revisions = map[string]Entry{}, map[string]Entry{}, map[string]uint64{}
	}
	if e.Operation() == jetstream.KeyValuePut {
		v.revisions[e.Key()] = e.Revision()
	} else {
		delete(v.revisions, e.Key()) // a delete marker may go any time
	}
	if kind == "pause" {
		v.pauses[e.Key()] = ent
	} else {
		v.budgets[tenant] = ent
	}
	return change{kind: kind, tenant: tenant, priority: p, entry: ent}, unreadable
}

// readEntry reads an entry's JSON, which must be an object: null, a list
// or a string would read as an entry with nothing set (for a pause key,
// resumed), though nobody wrote one. strict (pause keys) refuses members
// an entry does not have: a pause written by hand as {"pause":true} or
// {"pasued":true} would read as resumed too.
func readEntry(data []byte, ent *Entry, strict bool) error {
	if v := bytes.TrimSpace(data); len(v) == 0 || v[0] != '{' {
		return errors.New("the value is not a JSON object")
	}
	if !strict {
		return json.Unmarshal(data, ent)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(ent); err != nil {
		return fmt.Errorf("the value is not a control entry: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("the value holds more than one JSON value")
	}
	return nil
}

// isUnreadable says whether apply's error is an entry it could not read
// but recorded all the same.
func isUnreadable(err error) bool {
	var u *unreadableError
	return errors.As(err, &u)
}

// unreadableError is a control key whose value could not be read, and
// how the view took it: a pause key as paused, a budget key as an
// override that is no budget.
type unreadableError struct {
	Key   string
	Err   error
	Taken string
}

func (e *unreadableError) Error() string {
	return fmt.Sprintf("control key %q: %v: taken as %s until written again", e.Key, e.Err, e.Taken)
}

func (e *unreadableError) Unwrap() error { return e.Err }

// UnreadableBudget stands for the value of a budget entry that could not
// be read: no budget, so the override is ignored.
const UnreadableBudget = "(unreadable)"

// lostIn lists the controls in force in v that have no entry at all in
// next, in a stable order: neither resumed nor cleared (that writes an
// entry), nor deleted (a delete marker is an entry), but gone with the
// bucket's messages.
func (v *View) lostIn(next *View) []change {
	var lost []change
	for _, key := range slices.Sorted(maps.Keys(v.pauses)) {
		if e := v.pauses[key]; e.Paused {
			if _, ok := next.pauses[key]; !ok {
				_, tenant, p, _ := ParseKey(key)
				lost = append(lost, change{kind: "pause", tenant: tenant, priority: p, entry: e})
			}
		}
	}
	for _, tenant := range slices.Sorted(maps.Keys(v.budgets)) {
		if e := v.budgets[tenant]; e.Value != "" {
			if _, ok := next.budgets[tenant]; !ok {
				lost = append(lost, change{kind: "budget", tenant: tenant, entry: e})
			}
		}
	}
	return lost
}

// change is one applied entry.
type change struct {
	kind     string
	tenant   string
	priority offboard.Priority
	entry    Entry
}

// inForce says whether the change leaves a control in force.
func (c change) inForce() bool { return c.entry.Paused || c.entry.Value != "" }
