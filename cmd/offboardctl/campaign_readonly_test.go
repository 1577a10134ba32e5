package main

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignStatusMakesNoControlBucket: campaign status, which only
// reads, shows a campaign whose control bucket does not exist (deleted,
// or deploy/nats not applied yet) as not cancelled, and leaves the bucket
// missing. It made the bucket, with offboardctl's settings rather than
// the worker's or those of deploy/nats.
func TestCampaignStatusMakesNoControlBucket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	e.stopWorker()
	if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
		offboard.Request{RequestID: "camp-000001", MachineID: randHex(20), Source: "campaign:camp"}); err != nil {
		t.Fatal(err)
	}
	if err := e.js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "camp")
	if code != exitOK {
		t.Fatalf("campaign status: exit %d %s %s", code, out, errs)
	}
	if _, err := e.js.KeyValue(t.Context(), offboard.BucketControl); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("control bucket after campaign status: %v, want it still missing", err)
	}
}
