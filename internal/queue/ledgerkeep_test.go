package queue

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEnsureNeverShortensTheLedger: replicas started with different
// --ledger-ttl (a rolling update that changes it, a tenants file with a
// longer tracking maxAge on one of them) set up the same ledger. One with
// a shorter TTL must not cut what the others remember: the followed
// actions' states of the longer one's tracking, and request ids answered
// within its TTL, which a retry would then find forgotten and work on as
// new. Setup keeps the longer TTL.
func TestEnsureNeverShortensTheLedger(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	if _, err := Ensure(ctx, js, Settings{Tenants: []string{"contoso"}, LedgerTTL: 90 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, Settings{Tenants: []string{"contoso"}, LedgerTTL: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.TTL(); got != 90*24*time.Hour {
		t.Errorf("the ledger keeps entries %v after a replica of a shorter --ledger-ttl set it up, want 2160h kept", got)
	}
}
