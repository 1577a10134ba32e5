package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// A replica that does not answer but announced other guards than the
// one that answers: the line that says the guards differ names both
// replicas, the silent one by the digest it announced. Before, it named
// the answering replica alone, as if one replica held other guards.
func TestGuardsDifferWithAReplicaNotAnswering(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsDC)
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "replica-old", []byte(`{"tenants":["contoso"],"guards":{"contoso":"0123456789abcdef"}}`)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	want := "GUARDS DIFFER for tenant contoso: replica replica-a and replica replica-old (not answered: by the digest it announced) hold other guards"
	if !strings.Contains(out, want) {
		t.Errorf("stdout lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "NOT ANSWERED for tenant contoso: replica replica-old did not answer within 2s") {
		t.Errorf("the replica not answering is not named as such:\n%s", out)
	}
}
