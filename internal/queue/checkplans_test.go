package queue

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCheckNeedsThePlansBucket: the object store that carries campaign
// plans too large for a reply is one of the streams the worker needs
// (OBJ_MDE_OFFBOARD_PLANS). Missing (a --no-setup deployment without
// deploy/nats/obj-MDE_OFFBOARD_PLANS.json, or deleted), /readyz must not
// answer 200: before, it did, and every large plan then failed with
// internal_error.
func TestCheckNeedsThePlansBucket(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), js, s); err != nil {
		t.Fatalf("Check after Ensure: %v", err)
	}
	if err := js.DeleteObjectStore(t.Context(), offboard.BucketPlans); err != nil {
		t.Fatal(err)
	}
	err := Check(t.Context(), js, s)
	if err == nil || !strings.Contains(err.Error(), offboard.BucketPlans) {
		t.Errorf("Check without the plans bucket: %v, want an error naming %s", err, offboard.BucketPlans)
	}
}
