package main

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// The oldest waiting request's age is this machine's clock less the NATS
// server's time of the request: on a machine whose clock is behind the
// server's, a request just published is younger than nothing. Status
// showed such an age below zero (OLDEST "-30s", a negative
// oldestAgeSeconds), where the worker's gauge of the same request reads
// 0.
func TestStatusOldestAgeFromAClockBehind(t *testing.T) {
	t.Parallel()
	_, js := natsWithStreams(t)
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Request("contoso", offboard.Normal), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitPending(t, js, "contoso", map[offboard.Priority]uint64{offboard.Normal: 1})
	c := &cli{js: js, timeout: 10 * time.Second, subjects: offboard.Subjects{}}
	behind := time.Now().Add(-30 * time.Second)
	sts, err := c.status(t.Context(), "contoso", behind)
	if err != nil {
		t.Fatal(err)
	}
	st := sts[0]
	if _, ok := st.OldestWaiting[offboard.Normal]; !ok {
		t.Fatalf("status shows no oldest waiting request: %+v", st)
	}
	if age := st.OldestAge[offboard.Normal]; age != 0 {
		t.Errorf("oldestAgeSeconds %v from a clock 30s behind the server's, want 0", age)
	}
	if cell := oldestCell(st); cell != "0s" {
		t.Errorf("OLDEST %q from a clock 30s behind the server's, want 0s", cell)
	}
}
