package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestStatusShowsAPauseLongerThanTheWindows: a 429 named a Retry-After of
// half an hour for a tenant whose offboard limits are a minute long.
// Status, ten minutes later, still shows the pause (and an ETA after it):
// it reads the journal back as far as a pause can reach (an hour), not
// only as far as the tenant's windows. Before, it read back three minutes
// and showed the tenant free to call.
func TestStatusShowsAPauseLongerThanTheWindows(t *testing.T) {
	t.Parallel()
	js, s := contosoWithOneRequest(t)
	throttled := time.Now()
	until := throttled.Add(30 * time.Minute)
	data, _ := json.Marshal(limiter.Event{Writer: "w1", Paused: until.UnixNano()})
	if _, err := js.Publish(t.Context(), "mde.offboard.quota.contoso", data); err != nil {
		t.Fatal(err)
	}
	c := &cli{js: js, timeout: 5 * time.Second, subjects: s.Subjects}
	now := throttled.Add(10 * time.Minute)
	sts, err := c.status(t.Context(), "contoso", now)
	if err != nil {
		t.Fatal(err)
	}
	st := sts[0]
	if st.ThrottledTill == nil || !st.ThrottledTill.Equal(time.Unix(0, until.UnixNano())) {
		t.Errorf("ten minutes into a 30 minute pause: throttled till %v, want %v", st.ThrottledTill, until)
	}
	if st.ETA == nil || *st.ETA < (20*time.Minute).Seconds() {
		t.Errorf("ETA %v, want at least the 20 minutes of pause left", etaCell(st))
	}
}

// contosoWithOneRequest is a NATS server set up for tenant contoso, its
// offboard limit 10/1m, with one request waiting.
func contosoWithOneRequest(t *testing.T) (jetstream.JetStream, queue.Settings) {
	t.Helper()
	_, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Limits: map[string]string{"contoso": "10/1m0s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	return js, s
}

// TestStatusETAOfNothingDuringA429Pause: a tenant with nothing waiting
// or in flight has nothing to wait for, a 429's pause or not. Status gave
// it the pause's length as its ETA in --json (the table showed "-").
func TestStatusETAOfNothingDuringA429Pause(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Limits: map[string]string{"contoso": "10/1m0s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	data, _ := json.Marshal(limiter.Event{Writer: "w1", Paused: now.Add(30 * time.Minute).UnixNano()})
	if _, err := js.Publish(t.Context(), "mde.offboard.quota.contoso", data); err != nil {
		t.Fatal(err)
	}
	c := &cli{js: js, timeout: 5 * time.Second, subjects: s.Subjects}
	for _, tenant := range []string{"contoso", ""} {
		sts, err := c.status(t.Context(), tenant, now)
		if err != nil {
			t.Fatal(err)
		}
		st := sts[0]
		got := "null"
		if st.ETA != nil {
			got = fmt.Sprint(*st.ETA)
		}
		if st.ThrottledTill == nil || got != "0" {
			t.Errorf("status %q of no backlog in a 429's pause: throttled till %v, ETA %s; want the pause shown and an ETA of 0",
				tenant, st.ThrottledTill, got)
		}
	}
}
