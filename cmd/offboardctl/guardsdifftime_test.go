package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Two replicas whose tier-0 lists of 50,000 device ids differ by one id
// each: the differences are told within a second or so (a 10 s bound
// under the race detector, on a loaded machine). Before, each entry was
// looked for in the other list entry by entry: 25 s before the first
// line was printed.
func TestGuardsDifferencesOfLongLists(t *testing.T) {
	var a, b []string
	for i := range 50000 {
		a = append(a, fmt.Sprintf("%040x", i))
		b = append(b, fmt.Sprintf("%040x", i+1))
	}
	sets := []guardsHeld{
		{Replicas: []string{"replica-a"}, Protect: offboard.GuardsProtect{MachineIDs: a}},
		{Replicas: []string{"replica-b"}, Protect: offboard.GuardsProtect{MachineIDs: b}},
	}
	done := make(chan []string, 1)
	start := time.Now()
	go func() { done <- differences(sets) }()
	select {
	case lines := <-done:
		t.Logf("%v", time.Since(start))
		want := fmt.Sprintf(`protect.machineIds         replica replica-a: 50000, of its own "%040x"; replica replica-b: 50000, of its own "%040x"`, 0, 50000)
		if len(lines) != 1 || lines[0] != want {
			t.Errorf("differences:\n%s\nwant\n%s", strings.Join(lines, "\n"), want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the differences of two lists of 50,000 ids not told within 10 s")
	}
}
