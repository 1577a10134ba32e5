package control

import (
	"fmt"
	"strings"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Actions of a control change, as events name them.
const (
	ActionPause       = "pause"
	ActionResume      = "resume"
	ActionBudget      = "budget"
	ActionBudgetClear = "budget_clear"
)

// PriorityAll stands for both priorities in a pause or resume.
const PriorityAll = "all"

// Priorities are the request priorities a pause can name.
var Priorities = []offboard.Priority{offboard.Normal, offboard.Bulk}

// Entry is the value of a control key: the control's state, and who set it
// and why.
type Entry struct {
	Paused bool      `json:"paused,omitempty"` // pause keys
	Value  string    `json:"value,omitempty"`  // budget keys: "<count>/<duration>", empty: the tenants file's
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Event is a control change as published on <prefix>.control.<tenant>.
type Event struct {
	Tenant   string    `json:"tenant"`
	Action   string    `json:"action"`             // pause, resume, budget, budget_clear
	Priority string    `json:"priority,omitempty"` // pause and resume: normal, bulk or all
	Value    string    `json:"value,omitempty"`    // budget: the override
	By       string    `json:"by"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
	Revision uint64    `json:"revision"` // the bucket's revision of the (last) key written
}

// PauseKey is the key of a tenant's pause of one priority.
func PauseKey(tenant string, p offboard.Priority) string {
	return "pause." + tenant + "." + string(p)
}

// BudgetKey is the key of a tenant's budget override.
func BudgetKey(tenant string) string { return "budget." + tenant }

// ParseKey reads a control key: kind is "pause" or "budget"; p is set for
// pauses. ok is false for a key of no known form.
func ParseKey(key string) (kind, tenant string, p offboard.Priority, ok bool) {
	parts := strings.Split(key, ".")
	switch {
	case len(parts) == 3 && parts[0] == "pause" && (parts[2] == string(offboard.Normal) || parts[2] == string(offboard.Bulk)):
		return "pause", parts[1], offboard.Priority(parts[2]), true
	case len(parts) == 2 && parts[0] == "budget":
		return "budget", parts[1], "", true
	}
	return "", "", "", false
}

// ParsePriority reads a pause's --priority: normal, bulk or all.
func ParsePriority(s string) ([]offboard.Priority, error) {
	switch s {
	case string(offboard.Normal):
		return []offboard.Priority{offboard.Normal}, nil
	case string(offboard.Bulk):
		return []offboard.Priority{offboard.Bulk}, nil
	case PriorityAll, "":
		return Priorities, nil
	}
	return nil, fmt.Errorf("priority %s: want normal, bulk or all", offboard.Quote(s))
}
