package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestScanGoesOnAfterAnEmptyFetch: a fetch that brings nothing in its
// wait (a slow or busy server; here a first wait too short for any
// answer) ends a scan only when the stream holds nothing more on the
// subject. A scan
// cut short had campaign run publish rows again that still waited, and
// cancel and dead retry miss what was stored.
func TestScanGoesOnAfterAnEmptyFetch(t *testing.T) {
	t.Parallel()
	_, js := natsWithStreams(t)
	const stored = 2000
	for i := range stored {
		m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
		m.Data = fmt.Appendf(nil, `{"requestId":"d-%d"}`, i)
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("publish")
	}
	read := 0
	if err := scanWaiting(t.Context(), js, offboard.StreamDead, offboard.Subjects{}.Dead("contoso"), time.Nanosecond, func(jetstream.Msg) { read++ }); err != nil {
		t.Fatal(err)
	}
	if read != stored {
		t.Errorf("scan read %d of %d messages", read, stored)
	}
}
